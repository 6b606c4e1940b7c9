"""The two framework events of an early execution: its tool started, its result is ready.

A :class:`ToolEvents` is the per-request observer (see :mod:`conveyor_integrations.observers`)
that an adapter passes to its session when the framework has a listener. It turns the
execution's steps into at most two events per call, each told once:

- ``conveyor_tool_started`` (:data:`STARTED`) when the tool's body began: ``tool``, ``call_id``,
  ``request_id``, ``index``, ``at`` (epoch seconds) and ``elapsed_s`` (since the request began);
- ``conveyor_tool_result`` (:data:`RESULT`) when its work ended: the same keys, and ``status``
  (ok, error, aborted or cancelled), ``early`` (True), ``seconds`` (the tool's run time) and
  ``reason`` (for an abort or a cancel).

The steps come from any thread; they are queued, and the adapter drains the queue on its own
thread while the model streams (:meth:`ToolEvents.drain`) and once at its end
(:meth:`ToolEvents.end`). What happens after the end (a tool that finishes after the message
did) is told by whoever claims the result: the tool wrapper claims inside :func:`claims` and
turns what it collected into the events with :func:`late_events`. Example::

    >>> from conveyor_integrations.observers import ExecutionEvent
    >>> watch = ToolEvents()
    >>> note = watch.open("req-1")
    >>> note(ExecutionEvent("start", 1.0, "req-1", "call_1", "search", 0))
    >>> note(ExecutionEvent("tool_start", 1.5, "req-1", "call_1", "search", 0))
    >>> [(e.name, e.data["tool"]) for e in watch.drain()]
    [('conveyor_tool_started', 'search')]
    >>> watch.end()                                  # the message ended before the tool
    []
    >>> with claims() as late:                       # the framework claims the result
    ...     note(ExecutionEvent("claim", 2.0, "req-1", "call_1", "search", 0))
    >>> [(e.name, e.data["status"]) for e in late_events(late, None)]
    [('conveyor_tool_result', 'ok')]
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ..errors import EarlyAbort, RequestCancelled, ResultDropped
from ..observers import ExecutionEvent, Observe
from ..timings import CallTiming

__all__ = ["RESULT", "STARTED", "Late", "ToolEvent", "ToolEvents", "claims", "late_events",
           "outcome_status"]

STARTED = "conveyor_tool_started"
RESULT = "conveyor_tool_result"
_EPOCH = time.time() - time.perf_counter()
"""Added to a ``perf_counter`` time, the epoch time (one offset for the process)."""

# the claims made in the scope of claims(): the late events they carry
_CLAIMS: ContextVar[list[Late] | None] = ContextVar("conveyor_claims", default=None)


@dataclass(frozen=True, slots=True)
class ToolEvent:
    """One framework event: its name and its data (a JSON-serialisable dict)."""

    name: str
    data: dict[str, Any]


class _Call:
    __slots__ = ("base", "cancelled", "result_sent", "started_sent", "tool_start")

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base
        self.tool_start: float | None = None
        self.started_sent = False
        self.result_sent = False
        self.cancelled = False


@dataclass(frozen=True, slots=True)
class Late:
    """A claim, made after the model's stream ended, whose events were not told yet."""

    events: ToolEvents
    call_id: str


class ToolEvents:
    """The observer of one request that queues its framework events (see the module)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[ToolEvent] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._calls: dict[str, _Call] = {}
        self._ended = False
        self._origin = time.perf_counter()

    def open(self, request_id: str) -> Observe:
        """The callback for the request's steps (``Observer.open``)."""
        self._origin = time.perf_counter()
        return self._note

    def pending(self) -> bool:
        """Events wait to be drained (cheap, from any thread)."""
        return not self._queue.empty()

    def drain(self) -> list[ToolEvent]:
        """The events queued so far, in order."""
        out: list[ToolEvent] = []
        q = self._queue
        while not q.empty():        # one consumer: what is there stays there
            out.append(q.get_nowait())
        return out

    def end(self) -> list[ToolEvent]:
        """The model's stream ended: the last queued events; later ones go to the claimer."""
        with self._lock:
            self._ended = True
        return self.drain()

    # -- the observer side (any thread) ----------------------------------------------------------
    def _note(self, ev: ExecutionEvent) -> None:
        kind = ev.kind
        with self._lock:
            call = self._calls.get(ev.call_id)
            if kind == "start" and call is None:
                self._calls[ev.call_id] = _Call({"tool": ev.tool, "call_id": ev.call_id,
                                                 "request_id": ev.request_id, "index": ev.index})
                return
            if call is None:
                return
            if kind == "tool_start":
                if call.tool_start is None:
                    call.tool_start = ev.at
                    if not self._ended:
                        call.started_sent = True
                        self._queue.put(self._started(call))
            elif kind in ("finish", "cancel"):
                if kind == "cancel":
                    call.cancelled = True
                if not self._ended and call.started_sent and not call.result_sent:
                    call.result_sent = True
                    status = "cancelled" if kind == "cancel" else str(ev.detail.get("status"))
                    self._queue.put(self._result(call, status, ev.at,
                                                 ev.detail.get("reason")))
            elif kind == "claim" and self._ended and not call.result_sent:
                sink = _CLAIMS.get()
                if sink is not None:
                    sink.append(Late(self, ev.call_id))

    def _started(self, call: _Call) -> ToolEvent:
        at = call.tool_start
        assert at is not None
        return ToolEvent(STARTED, {**call.base, "at": at + _EPOCH,
                                   "elapsed_s": round(at - self._origin, 6)})

    def _result(self, call: _Call, status: str, end: float | None,
                reason: Any = None) -> ToolEvent:
        start = call.tool_start
        seconds = None if start is None or end is None else round(max(end - start, 0.0), 6)
        elapsed = None if end is None else round(end - self._origin, 6)
        return ToolEvent(RESULT, {**call.base, "status": status, "early": True,
                                  "seconds": seconds, "elapsed_s": elapsed,
                                  "reason": None if reason is None else str(reason)})

    def _late(self, call_id: str, status: str, timing: CallTiming | None) -> list[ToolEvent]:
        with self._lock:
            call = self._calls.get(call_id)
            if call is None or call.result_sent:
                return []
            out: list[ToolEvent] = []
            if call.tool_start is None and timing is not None:
                call.tool_start = timing.tool_start
            if not call.started_sent and call.tool_start is not None:
                call.started_sent = True
                out.append(self._started(call))
            call.result_sent = True
            end = timing.tool_end if timing is not None else None
            out.append(self._result(call, status, end if end is not None else time.perf_counter()))
            return out


@contextmanager
def claims() -> Iterator[list[Late]]:
    """Collect the late events of the claims made inside (by the tool wrappers)."""
    sink: list[Late] = []
    token = _CLAIMS.set(sink)
    try:
        yield sink
    finally:
        _CLAIMS.reset(token)


def outcome_status(exc: BaseException | None) -> str:
    """The ``status`` of a result claimed with this outcome (None: it returned a value)."""
    if exc is None:
        return "ok"
    if isinstance(exc, EarlyAbort):
        return "aborted"
    if isinstance(exc, (ResultDropped, RequestCancelled)):
        return "cancelled"
    return "error"


def late_events(late: list[Late], exc: BaseException | None,
                timings: Callable[[str], CallTiming | None] | None = None) -> list[ToolEvent]:
    """The events still untold of the claims in ``late`` (once each): the started event if the
    tool began after the stream ended, and the result with the claim's outcome (``exc``).
    ``timings``: a call id's final timings (``Scheduler.timing``), for the run time."""
    status = outcome_status(exc)
    out: list[ToolEvent] = []
    for item in late:
        timing = timings(item.call_id) if timings is not None else None
        out.extend(item.events._late(item.call_id, status, timing))
    return out
