"""One request: feed it a parser's events while the model decodes.

A session belongs to one event loop, the loop that drives the model's stream, and its early
executions run there. ``handle(events)`` does the per-call bookkeeping (timings, what the
request's policy lets start) and hands the call events to the executions: directly when it runs
on that loop, or through the loop's :class:`~conveyor_integrations.loop_inbox.LoopInbox` (one
wake-up for all the batches posted while one is pending) when it is fed from a thread that has no
loop (a LangChain callback handler under a sync ``invoke``). Text deltas never
cross. After each delta the driver reads ``session.abort``: when an execution raised
``EarlyAbort`` it is set, and the driver stops decoding. Example::

    >>> from conveyor_integrations import partial_tool
    >>> from conveyor_integrations.scheduler import Scheduler
    >>> from conveyor_integrations.events import CallStarted, FieldDone, CallDone
    >>> sched = Scheduler()
    >>> @partial_tool(start_on=["text"])
    ... def shout(text: str) -> str: return text.upper()
    >>> s = sched.session(tools=[shout])
    >>> s.handle([CallStarted(0, "c1", "shout"), FieldDone(0, ("text",), "hi"),
    ...           CallDone(0, "c1", "shout", {"text": "hi"})])
    >>> s.finish()
    >>> sched.claim("c1", spec=shout.conveyor_spec)
    (True, 'HI')
    >>> sched.close()
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any

from .early_run import EarlyRun, Hooks, executor_of
from .errors import EarlyAbort, RequestCancelled
from .events import (
    CallDone,
    CallEvent,
    CallMalformed,
    CallStarted,
    Event,
    FieldDone,
    ItemDone,
    StreamDone,
    TextChunk,
)
from .loop_inbox import inbox_for
from .observers import Observer, open_observers
from .policy import Policy, Start, run_under
from .spec import ToolExecutor
from .speculation import Speculation
from .speculation_request import RequestSpeculation
from .store import ResultStore
from .timings import CallTiming

__all__ = ["RequestSession"]

_session_ids = itertools.count()
_PIECES = (FieldDone, TextChunk, ItemDone)


class RequestSession:
    """The calls of one model message and their early executions."""

    def __init__(self, store: ResultStore, policy: Policy, *, loop: asyncio.AbstractEventLoop,
                 pool: Executor, request_id: str | None = None, owner: object = None,
                 claim_timeout: float = 300.0,
                 on_abort: Callable[[str, EarlyAbort], None] | None = None,
                 observers: Iterable[Observer] = (),
                 executor: ToolExecutor | None = None,
                 speculation: Speculation | None = None,
                 follows: Iterable[str] = ()) -> None:
        self.store, self.policy, self.loop, self._pool = store, policy, loop, pool
        self._executor = executor
        self._owner, self._claim_timeout = owner, claim_timeout
        self._abort_listener = on_abort
        self.request_id = request_id or f"session-{next(_session_ids)}"
        self._observe = open_observers(self.request_id, observers)
        self.started = time.perf_counter()
        self.timings: dict[int, CallTiming] = {}
        """Per call index, every call of the message (partial or not)."""
        self.abort: EarlyAbort | None = None
        """Set (on the session's loop) when an execution raised ``EarlyAbort``."""
        self.abort_call_id: str | None = None
        self.decode_end: float | None = None
        self._execs: dict[int, EarlyRun] = {}
        self._starts: dict[int, Start] = {}
        self._decided: dict[str, Start | None] = {}
        """The policy's answer per tool name (asked once per name and session)."""
        self._context = run_under(policy)
        """Copied for each early run: its request's policy, nothing of the caller's context."""
        self._closed = False
        self._noted_aborts: set[str] = set()
        self._speculation = (None if speculation is None
                             else RequestSpeculation(speculation, follows))
        self._hooks = Hooks(on_abort=self._on_abort, on_waiting=store.arm_expiry,
                            speculated=(self._speculation.take if self._speculation is not None
                                        and self._speculation.holds else None),
                            on_result=self._predict if self._speculation is not None
                            else None)
        self._driver: int | None = None
        self._driver_on_loop = False
        self._inbox = inbox_for(loop)

    # -- the stream side -------------------------------------------------------------------
    def handle(self, events: Iterable[Event]) -> None:
        """Route one batch of parser events; cheap and non-blocking."""
        posts: list[tuple[EarlyRun, CallEvent]] | None = None
        execs = self._execs
        for ev in events:
            if isinstance(ev, _PIECES):
                ex = execs.get(ev.index)
            elif isinstance(ev, CallStarted):
                ex = self._on_started(ev)
            elif isinstance(ev, CallDone):
                ex = self._on_done(ev)
            elif isinstance(ev, CallMalformed):
                ex = self._on_malformed(ev)
            elif isinstance(ev, StreamDone):
                self.finish()
                continue
            else:
                continue
            if ex is not None:
                if posts is None:
                    posts = []
                posts.append((ex, ev))
        if posts:
            if self._on_own_loop():
                _deliver(posts)
            else:
                self._inbox.post(_deliver, posts)

    def _on_own_loop(self) -> bool:
        """``handle`` runs on the session's loop (asked once per driving thread)."""
        ident = threading.get_ident()
        if ident != self._driver:
            try:
                own = asyncio.get_running_loop() is self.loop
            except RuntimeError:
                own = False
            self._driver, self._driver_on_loop = ident, own
        return self._driver_on_loop

    def _on_started(self, ev: CallStarted) -> EarlyRun | None:
        timing = self.timings[ev.index] = CallTiming(ev.id, ev.name, ev.index,
                                                     seen=time.perf_counter(),
                                                     origin=self.started)
        start = self._decide(ev.name)
        if start is None:
            timing.status = "not_partial"
            return None
        self._starts[ev.index] = start
        if start.complete_only or self._closed:
            return None
        return self._new(ev.index, ev.id, start, timing)

    def _decide(self, name: str) -> Start | None:
        try:
            return self._decided[name]
        except KeyError:
            start = self._decided[name] = self.policy.decide(name)
            return start

    def _on_done(self, ev: CallDone) -> EarlyRun | None:
        timing = self.timings.get(ev.index)
        if timing is None:
            timing = self.timings[ev.index] = CallTiming(ev.id, ev.name, ev.index,
                                                         seen=time.perf_counter(),
                                                         origin=self.started)
        timing.args_final = time.perf_counter()
        ex = self._execs.get(ev.index)
        if ex is None and not self._closed and self.abort is None:
            start = self._starts.get(ev.index) or self._decide(ev.name)
            if start is not None and start.complete_only:
                ex = self._new(ev.index, ev.id, start, timing)
        if ex is not None and not ex.aborted:
            ex.final_args = ex.spec.tool_args(ev.args)   # before any claim can compare them
            self.store.index_args(ex, ex.final_args)
            if self._speculation is not None:
                self._speculation.saw_call(ex.spec, ex.final_args)
        return ex

    def _on_malformed(self, ev: CallMalformed) -> EarlyRun | None:
        timing = self.timings.get(ev.index)
        if timing is not None and timing.status in ("pending", "not_partial"):
            timing.status = "malformed"
        ex = self._execs.get(ev.index)
        if ex is not None and not ex.aborted and self.store.discard(ex):
            return ex
        return None

    def _new(self, index: int, call_id: str, start: Start, timing: CallTiming) -> EarlyRun:
        ex = EarlyRun(start.spec, call_id, timing, loop=self.loop, pool=self._pool,
                       hooks=self._hooks, complete_only=start.complete_only,
                       owner=self._owner, claim_timeout=self._claim_timeout,
                       context=self._context, observe=self._observe,
                       request_id=self.request_id, executor=self._executor)
        self._execs[index] = ex
        self.store.add(ex)
        ex.note("start", complete_only=start.complete_only)
        return ex

    def finish(self) -> None:
        """Decoding ended normally: stamp the decode end on every call. Held speculative runs
        that no call of this message takes are cancelled once its early work is done."""
        if self.decode_end is None:
            self.decode_end = time.perf_counter()
            for timing in self.timings.values():
                timing.decode_end = self.decode_end
            if self._speculation is not None:
                self._speculation.remember(t.call_id for t in self.timings.values())
                self._speculation.miss_left_after(ex.result for ex in self._execs.values())

    # -- speculation -------------------------------------------------------------------------
    def _predict(self, ex: EarlyRun, value: Any) -> None:
        """``ex`` has its result: start what its follow-up and the agent run's learned
        transitions predict (read-only tools only)."""
        own = self._speculation
        if own is None or self._closed or (ex.spec.follow_up is None and not own.wants_results):
            return
        own.predict(ex.spec, ex.call_id, ex.final_args or {}, value, policy=self.policy,
                    context=self._context, loop=self.loop, pool=self._pool,
                    executor=lambda spec: executor_of(spec, self._executor))

    def cancel(self, reason: str = "request cancelled") -> None:
        """The stream failed or was cancelled: cancel and drop every execution of the request."""
        self._closed = True
        self.finish()
        if self._speculation is not None:
            self._speculation.miss_left()
        for ex in self._execs.values():
            if self.store.discard(ex):
                ex.drop_soon(reason, exc=RequestCancelled(reason))

    # -- results -----------------------------------------------------------------------------
    @property
    def aborted(self) -> bool:
        """An execution asked to stop decoding."""
        return self.abort is not None

    def call_ids(self) -> list[str]:
        """Ids of the calls that run early in this session."""
        return [ex.call_id for ex in self._execs.values()]

    def timings_dict(self) -> list[dict[str, Any]]:
        """Every call's timings, in seconds since the session started (JSON-serialisable)."""
        return [t.as_dict(self.started) for _, t in sorted(self.timings.items())]

    def metadata(self, tool_format: str) -> dict[str, Any]:
        """The request's per-call timings (seconds since it began) and its early abort.

        A snapshot: a tool still running shows ``status: "running"`` and ``saved_s: None``;
        ``saved_s`` of the request counts the calls whose saving is known."""
        end = self.decode_end or time.perf_counter()
        abort = None if self.abort is None else {"reason": self.abort.reason,
                                                 "call_id": self.abort_call_id}
        calls = self.timings_dict()
        out = {"request_id": self.request_id, "tool_format": tool_format,
               "decode_s": round(end - self.started, 6), "calls": calls,
               "saved_s": round(sum(c["saved_s"] or 0.0 for c in calls), 6), "abort": abort}
        if self._speculation is not None and self._speculation.stats.started:
            out["speculation"] = self._speculation.stats.as_dict()
        return out

    def note_aborted(self, call: CallDone) -> None:
        """Remember the call that stopped decoding by its partial arguments (as its tool sees
        them), so that a framework invoking the tool with them gets the ``EarlyAbort`` instead
        of a run on a truncated call (it was never indexed by its arguments). Once per call."""
        ex = self._execs.get(call.index)
        if ex is None or ex.call_id != call.id or call.id in self._noted_aborts:
            return
        self._noted_aborts.add(call.id)
        self.store.note_aborted(call.name, ex.spec.tool_args(call.args), call.id)

    def _on_abort(self, ex: EarlyRun, exc: EarlyAbort) -> None:
        if self.abort is None:
            self.abort_call_id = ex.call_id
            self.abort = exc
            if self._abort_listener is not None:
                self._abort_listener(ex.call_id, exc)


def _deliver(posts: list[tuple[EarlyRun, CallEvent]]) -> None:
    for ex, ev in posts:
        ex.put(ev)
