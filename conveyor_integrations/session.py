"""One request's view of the scheduler: feed it a parser's events while the model decodes.

``handle(events)`` runs on the thread that drives the stream. It does the per-call bookkeeping
there (timings, which calls are partial) and crosses to the scheduler's loop once per batch of
call events, never per token; text deltas never cross. After each delta the driver reads
``session.abort``: when a partial execution raised ``EarlyAbort`` it is set, and the driver stops
decoding. Example::

    >>> from conveyor_integrations import partial_tool
    >>> from conveyor_integrations.scheduler import Scheduler
    >>> from conveyor_integrations.events import CallStarted, FieldDone, CallDone
    >>> sched = Scheduler()
    >>> shout = partial_tool(lambda text: text.upper(), start_on=["text"], scheduler=sched)
    >>> s = sched.session()
    >>> s.handle([CallStarted(0, "c1", "<lambda>"), FieldDone(0, ("text",), "hi"),
    ...           CallDone(0, "c1", "<lambda>", {"text": "hi"})])
    >>> s.finish()
    >>> sched.claim("c1")
    (True, 'HI')
    >>> sched.close()
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

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
from .execution import Execution
from .timings import CallTiming

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["RequestSession"]

_session_ids = itertools.count()
_PIECES = (FieldDone, TextChunk, ItemDone)


class RequestSession:
    """The calls of one model message and their early executions."""

    def __init__(self, sched: Scheduler, request_id: str | None = None, *,
                 approval_required: Collection[str] = (), tools: Collection[str] | None = None,
                 run_side_effects: bool = False):
        self.sched = sched
        self.request_id = request_id or f"session-{next(_session_ids)}"
        self.started = time.perf_counter()
        self.approval_required = frozenset(approval_required)
        self.tools = None if tools is None else frozenset(tools)
        self.run_side_effects = run_side_effects
        """Start ``side_effects=True`` tools on their complete call (only where nothing can still
        veto the call: no approval step, no later validation). Off by default: then such tools
        run only when the framework invokes them."""
        self.timings: dict[int, CallTiming] = {}
        """Per call index, every call of the message (partial or not)."""
        self.abort: EarlyAbort | None = None
        """Set (from the scheduler's thread) when a partial execution raised ``EarlyAbort``."""
        self.abort_call_id: str | None = None
        self.decode_end: float | None = None
        self._execs: dict[int, Execution] = {}
        self._closed = False

    # -- the stream side -------------------------------------------------------------------
    def handle(self, events: Iterable[Event]) -> None:
        """Route one batch of parser events; cheap, non-blocking, from any thread."""
        posts: list[tuple[Execution, CallEvent]] | None = None
        for ev in events:
            if isinstance(ev, _PIECES):
                ex = self._execs.get(ev.index)
                if ex is not None:
                    (posts := posts if posts is not None else []).append((ex, ev))
            elif isinstance(ev, CallStarted):
                ex = self._on_started(ev)
                if ex is not None:
                    (posts := posts if posts is not None else []).append((ex, ev))
            elif isinstance(ev, CallDone):
                ex = self._on_done(ev)
                if ex is not None:
                    (posts := posts if posts is not None else []).append((ex, ev))
            elif isinstance(ev, CallMalformed):
                timing = self.timings.get(ev.index)
                if timing is not None and timing.status == "pending":
                    timing.status = "malformed"
                ex = self._execs.get(ev.index)
                if ex is not None and not ex.aborted:
                    self.sched._discard(ex)
                    (posts := posts if posts is not None else []).append((ex, ev))
            elif isinstance(ev, StreamDone):
                self.finish()
        if posts:
            self.sched.call_soon(_deliver, posts)

    def _eligible(self, name: str) -> bool:
        return (self.tools is None or name in self.tools) and name not in self.approval_required

    def _on_started(self, ev: CallStarted) -> Execution | None:
        timing = CallTiming(ev.id, ev.name, ev.index, seen=time.perf_counter())
        self.timings[ev.index] = timing
        spec = self.sched.spec(ev.name)
        if spec is None or spec.side_effects or not self._eligible(ev.name) or self._closed:
            if spec is None:
                timing.status = "not_partial"
            return None
        return self._new(ev.index, ev.id, spec, timing)

    def _on_done(self, ev: CallDone) -> Execution | None:
        timing = self.timings.get(ev.index)
        if timing is None:
            timing = self.timings[ev.index] = CallTiming(ev.id, ev.name, ev.index,
                                                         seen=time.perf_counter())
        timing.args_final = time.perf_counter()
        ex = self._execs.get(ev.index)
        if ex is None and not self._closed and self.abort is None:
            spec = self.sched.spec(ev.name)
            if (spec is not None and spec.side_effects and self.run_side_effects
                    and self._eligible(ev.name)):
                ex = self._new(ev.index, ev.id, spec, timing)
        if ex is not None and not ex.aborted:
            ex.final_args = ev.args
            self.sched._index_args(ex, ev.args)
        return ex

    def _new(self, index: int, call_id: str, spec: Any, timing: CallTiming) -> Execution:
        ex = Execution(self.sched, self, call_id, spec, timing)
        self._execs[index] = ex
        self.sched._add(ex)
        return ex

    def finish(self) -> None:
        """Decoding ended normally: stamp the decode end on every call."""
        if self.decode_end is None:
            self.decode_end = time.perf_counter()
            for timing in self.timings.values():
                timing.decode_end = self.decode_end

    def cancel(self, reason: str = "request cancelled") -> None:
        """The stream failed or was cancelled: cancel and drop every execution of the request."""
        self._closed = True
        self.finish()
        execs = [ex for ex in self._execs.values() if self.sched._discard(ex)]
        if execs:
            self.sched.call_soon(_drop_all, execs, reason)

    async def acancel(self, reason: str = "request cancelled") -> None:
        """:meth:`cancel`, and wait until the executions are reaped."""
        self._closed = True
        self.finish()
        execs = [ex for ex in self._execs.values() if self.sched._discard(ex)]
        if execs:
            await asyncio.wrap_future(self.sched.submit(_drop_all_async(execs, reason)))

    # -- results -----------------------------------------------------------------------------
    @property
    def aborted(self) -> bool:
        """A partial execution asked to stop decoding."""
        return self.abort is not None

    def call_ids(self) -> list[str]:
        """Ids of the calls that run early in this session."""
        return [ex.call_id for ex in self._execs.values()]

    def timings_dict(self) -> list[dict[str, Any]]:
        """Every call's timings, in seconds since the session started (JSON-serialisable)."""
        return [t.as_dict(self.started) for _, t in sorted(self.timings.items())]

    def _on_abort(self, ex: Execution, exc: EarlyAbort) -> None:
        if self.abort is None:
            self.abort_call_id = ex.call_id
            self.abort = exc


def _deliver(posts: list[tuple[Execution, CallEvent]]) -> None:
    for ex, ev in posts:
        ex.put(ev)


def _drop_all(execs: list[Execution], reason: str) -> None:
    asyncio.get_running_loop().create_task(_drop_all_async(execs, reason))


async def _drop_all_async(execs: list[Execution], reason: str) -> None:
    await asyncio.gather(*(ex.drop(reason, status="dropped", exc=RequestCancelled(reason))
                           for ex in execs), return_exceptions=True)
