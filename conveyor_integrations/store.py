"""The exactly-once result store: early executions waiting for the framework to claim them.

An entry is held by call id, and once its call is complete also by (tool name, canonical
arguments) for frameworks that invoke tools without the call id (LlamaIndex). ``take`` removes an
entry under the lock, so each result is handed out once, to the tool object that started it: a
claim by another object (same name, different tool) drops the entry instead. Unclaimed entries
expire after ``claim_timeout`` seconds; ``release`` drops one that will never be claimed.
Calls stopped by an early abort are remembered by their partial arguments, so a claim by name
and those arguments reaches the ``EarlyAbort``. Thread-safe; timers run on each entry's loop.

One store serves the process (:data:`SHARED`): a tool claims its result wherever the model that
started it keeps its loop and pool, so a model and its tools never disagree on where results are.
Example::

    >>> store = ResultStore()
    >>> store.take("call_unknown") is None      # nothing ran early: the caller runs the tool
    True
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from .errors import AlreadyClaimed
from .loop_inbox import inbox_for

if TYPE_CHECKING:
    from .early_run import EarlyRun
    from .spec import ToolSpec
    from .timings import CallTiming

__all__ = ["SHARED", "ResultStore", "canonical_args"]

ABORTED_AND_GONE = ("error: this call was stopped while it was decoded (early abort) and its "
                    "early result is gone; the tool was not run on its partial arguments")
"""What a claim by partial arguments answers for an aborted call whose result expired or was
dropped: never a run of the body on the truncated call."""

_CLAIMED_MEMORY = 16384
_ABORTED_MEMORY = 1024


def canonical_args(args: Any) -> str:
    """A stable text form of arguments, the key for claims by name and arguments."""
    return json.dumps(args, sort_keys=True, separators=(",", ":"), default=repr, ensure_ascii=False)


class ResultStore:
    """Holds early executions until claimed, released, dropped or expired."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, EarlyRun] = {}
        self._keys: dict[str, tuple[str, str]] = {}
        self._by_args: dict[tuple[str, str], deque[EarlyRun]] = {}
        self._claimed: OrderedDict[str, CallTiming] = OrderedDict()
        self._aborted: OrderedDict[tuple[str, str], deque[str]] = OrderedDict()
        self._aborted_keys: dict[str, tuple[str, str]] = {}
        """The key each noted aborted call id is under (to forget it once it is claimed)."""
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._swept = time.monotonic()

    # -- entries -----------------------------------------------------------------------------
    def add(self, ex: EarlyRun) -> None:
        """Hold ``ex`` under its call id."""
        with self._lock:
            self._by_id[ex.call_id] = ex
            if time.monotonic() - self._swept > 1.0:
                self._sweep()

    def _sweep(self) -> None:
        """Forget the runs whose loop has closed (an ``asyncio.run`` that ended) and that can no
        longer be claimed: cancelled with their loop, or past their claim deadline (their
        expiry timer died with the loop). Under the lock."""
        now = self._swept = time.monotonic()
        for ex in [ex for ex in self._by_id.values() if ex.loop.is_closed()]:
            res = ex.result
            failed = res.done() and (res.cancelled() or res.exception() is not None)
            if not res.done() or failed or ex.deadline is None or now > ex.deadline:
                self._forget(ex)
                ex.drop_soon("its event loop closed before the result was claimed")

    def index_args(self, ex: EarlyRun, args: dict[str, Any]) -> None:
        """The call is complete: also hold ``ex`` under its tool name and ``args``."""
        key = (ex.spec.name, canonical_args(args))
        with self._lock:
            if self._by_id.get(ex.call_id) is ex:
                self._keys[ex.call_id] = key
                self._by_args.setdefault(key, deque()).append(ex)

    def discard(self, ex: EarlyRun) -> bool:
        """Stop holding ``ex``; False when it was no longer held (claimed or dropped)."""
        with self._lock:
            if self._by_id.get(ex.call_id) is not ex:
                return False
            self._forget(ex)
            return True

    def _forget(self, ex: EarlyRun) -> None:
        del self._by_id[ex.call_id]
        key = self._keys.pop(ex.call_id, None)
        if key is not None:
            q = self._by_args.get(key)
            if q is not None:
                try:
                    q.remove(ex)
                except ValueError:
                    pass
                if not q:
                    del self._by_args[key]
        timer = self._timers.pop(ex.call_id, None)
        if timer is not None:
            _on_loop(ex.loop, timer.cancel)

    def holds(self, ex: EarlyRun) -> bool:
        """``ex`` is still held (neither claimed nor dropped)."""
        with self._lock:
            return self._by_id.get(ex.call_id) is ex

    def get(self, call_id: str | None) -> EarlyRun | None:
        """The held execution of ``call_id``, without taking it."""
        with self._lock:
            return self._by_id.get(call_id) if call_id is not None else None

    def pending(self, owner: object = None) -> int:
        """How many executions are held (of ``owner``, when given)."""
        with self._lock:
            self._sweep()
            return sum(1 for ex in self._by_id.values() if owner is None or ex.owner is owner)

    def drain(self, owner: object) -> list[EarlyRun]:
        """Stop holding the executions of ``owner`` (a scheduler that closes); they are returned."""
        with self._lock:
            held = [ex for ex in self._by_id.values() if ex.owner is owner]
            for ex in held:
                self._forget(ex)
            return held

    # -- claims ------------------------------------------------------------------------------
    def take(self, call_id: str | None = None, *, name: str | None = None, args: Any = None,
             spec: ToolSpec | None = None) -> EarlyRun | None:
        """Remove and return the execution for a claim, or None ("run the tool yourself").

        By ``call_id``, or by ``name`` and ``args``. With ``spec`` (the claiming tool's), an
        execution started from another tool object is dropped, never handed over. Raises
        :class:`AlreadyClaimed` for a call id whose result was handed out before.
        """
        with self._lock:
            if call_id is not None:
                ex = self._by_id.get(call_id)
                if ex is None:
                    if call_id in self._claimed:
                        raise AlreadyClaimed(f"the result of tool call {call_id!r} was already "
                                             "handed out; each result is handed out once")
                    return None
            else:
                q = self._by_args.get((name or "", canonical_args(args)))
                if not q:
                    return None
                ex = q[0]
            self._forget(ex)
            self._unnote(ex.call_id)
            self._claimed[ex.call_id] = ex.timing
            while len(self._claimed) > _CLAIMED_MEMORY:
                self._claimed.popitem(last=False)
        if spec is not None and ex.spec is not spec:
            ex.drop_soon("claimed by a different tool object of the same name")
            return None
        return ex

    def claimed_timing(self, call_id: str | None) -> CallTiming | None:
        """The timings of a call whose result was handed out (kept for the recent calls): they
        are final once the claimer has the result."""
        with self._lock:
            return self._claimed.get(call_id) if call_id is not None else None

    def release(self, call_id: str, reason: str = "released") -> bool:
        """Drop the unclaimed execution of ``call_id`` (cancel its work); False if none."""
        ex = self.get(call_id)
        if ex is None or not self.discard(ex):
            return False
        ex.drop_soon(reason)
        return True

    # -- expiry and aborts (called on the execution's loop) -------------------------------------
    def arm_expiry(self, ex: EarlyRun) -> None:
        """Start the unclaimed-result timer of ``ex`` (on its loop), unless it is gone."""
        with self._lock:
            if self._by_id.get(ex.call_id) is not ex or ex.call_id in self._timers:
                return
            ex.deadline = time.monotonic() + ex.claim_timeout
            self._timers[ex.call_id] = ex.loop.call_later(
                ex.claim_timeout, self._expire, ex, context=contextvars.Context())

    def _expire(self, ex: EarlyRun) -> None:
        if self.discard(ex):
            ex.drop_soon(f"result of {ex.call_id!r} expired unclaimed after "
                         f"{ex.claim_timeout} s")

    def note_aborted(self, name: str, args: dict[str, Any], call_id: str) -> None:
        """The call ``call_id`` was stopped by an early abort with these partial arguments."""
        key = (name, canonical_args(args))
        with self._lock:
            self._aborted.setdefault(key, deque()).append(call_id)
            self._aborted_keys[call_id] = key
            while len(self._aborted) > _ABORTED_MEMORY:
                for old in self._aborted.popitem(last=False)[1]:
                    self._aborted_keys.pop(old, None)

    def _unnote(self, call_id: str) -> None:
        """Forget a noted aborted call (it was claimed by its id). Under the lock."""
        key = self._aborted_keys.pop(call_id, None)
        if key is not None and (q := self._aborted.get(key)) is not None:
            with contextlib.suppress(ValueError):
                q.remove(call_id)
            if not q:
                del self._aborted[key]

    def aborted_call(self, name: str, args: dict[str, Any]) -> str | None:
        """The id of an aborted call with this name and these partial arguments (taken once)."""
        key = (name, canonical_args(args))
        with self._lock:
            q = self._aborted.get(key)
            if not q:
                return None
            call_id = q.popleft()
            self._aborted_keys.pop(call_id, None)
            if not q:
                del self._aborted[key]
            return call_id


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Any) -> None:
    try:
        inbox_for(loop).post(fn)
    except RuntimeError:     # the loop is closed: its timers are gone with it
        pass


SHARED = ResultStore()
"""The process's store: every scheduler keeps its results here unless given its own."""
