"""The three modes for a user's own tools, and the ideal where it is well-defined.

The machinery of :mod:`.user_transcripts`: :func:`strategy_of` reads what ``partial_tool`` put
on a tool, :class:`ToolModes` runs one recorded message one way (``sequential``,
``complete_call``, ``partial``) through the parser, a session and a LangGraph ``ToolNode``, as
:class:`~conveyor_integrations.bench.harness.ModeBench` does for the built-in workloads, and
:func:`ideal_of` gives the pipeline bound of a partial run for tools that start on their whole
call or on ``start_on`` fields. Example::

    >>> from conveyor_integrations import partial_tool
    >>> @partial_tool(start_on=["city"])
    ... def weather(city: str, days: int = 1) -> str:
    ...     return city
    >>> strategy_of(weather)
    Strategy(kind='start_on', fields=('city',))
    >>> strategy_of(weather.__wrapped__).kind, strategy_of(weather).whole_call
    ('undecorated', True)
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from ..backends.base import ChatRequest
from ..backends.replay import Replay, Transcript
from ..events import CallDone, CallMalformed, CallStarted, Event, FieldDone
from ..parsing import get_parser
from ..partial import partial_tool
from ..policy import BoundTools, CompleteCallDispatch, HoldSideEffects, Policy, Start
from ..scheduler import Scheduler
from ..spec import spec_of
from ..strategies import EachItem, StartOn, StreamPieces
from ..timings import CallTiming
from .harness import decode_message, tool_graph
from .records import RunRecord, Span
from .workload_base import Mark, Piece, StampingParser, ideal_latency

__all__ = ["Observed", "Strategy", "ToolModes", "ideal_of", "strategy_of"]

_WHOLE_CALL = ("undecorated", "side_effects", "start_on", "call_start")


class Strategy(NamedTuple):
    """How a tool starts: ``kind`` is one of ``undecorated``, ``side_effects``, ``start_on``
    (``fields``), ``call_start`` (decorated with no strategy), ``stream``, ``items`` (the field
    in ``fields``) or ``execution`` (the user's own ``PartialExecution``)."""

    kind: str
    fields: tuple[str, ...] = ()

    @property
    def whole_call(self) -> bool:
        """A piece per call: the ideal is well-defined for the messages that call it."""
        return self.kind in _WHOLE_CALL

    def describe(self) -> str:
        """One line for the notes of a run."""
        if self.kind == "undecorated":
            return ("not decorated with partial_tool: the complete_call and partial modes start "
                    "it on its complete call")
        if self.kind == "side_effects":
            return ("side_effects=True: held until decoding ends in every mode (the framework "
                    "runs it), as an agent's default policy does")
        if self.kind == "start_on":
            return f"start_on={list(self.fields)}: starts once those fields are decoded"
        if self.kind == "call_start":
            return "partial_tool with no strategy: starts as soon as its call begins"
        option = (f"{self.kind}={self.fields[0]!r}" if self.kind in ("stream", "items")
                  else "execution= (its own PartialExecution)")
        return (f"{option}: no ideal for the messages that call it (the library does not know "
                "the pieces of its work)")


async def _never(args: dict[str, Any]) -> Any:   # a runner the inspected strategy never calls
    raise RuntimeError("not run")


def strategy_of(tool: Any) -> Strategy:
    """What ``partial_tool`` made of ``tool`` (see :class:`Strategy`); builds no user code."""
    spec = spec_of(tool)
    if spec is None:
        return Strategy("undecorated")
    if spec.side_effects:
        return Strategy("side_effects")
    if spec.custom:
        return Strategy("execution", tuple(spec.streams))
    execution = spec.make_execution(_never)
    if isinstance(execution, StreamPieces):
        return Strategy("stream", (execution._field,))
    if isinstance(execution, EachItem):
        return Strategy("items", (execution._field,))
    if isinstance(execution, StartOn):
        fields = tuple(execution._fields)
        return Strategy("start_on", fields) if fields else Strategy("call_start")
    return Strategy("execution")


class _Retag:
    """A parser whose call ids get a per-run suffix: a recorded id (OpenAI deltas, Mistral's
    ``[CALL_ID]``) repeats in every run, and each result is handed out once per call id."""

    def __init__(self, parser: Any, tag: str) -> None:
        self._parser, self._tag = parser, tag

    def _retag(self, events: list[Event]) -> list[Event]:
        return [replace(ev, id=f"{ev.id}-{self._tag}")
                if isinstance(ev, CallStarted | CallDone | CallMalformed) and ev.id else ev
                for ev in events]

    def feed(self, delta: Any) -> list[Event]:
        return self._retag(self._parser.feed(delta))

    def close(self) -> list[Event]:
        return self._retag(self._parser.close())


@dataclass(frozen=True, slots=True)
class _OnCompleteCall:
    """Policy: the named tools (undecorated ones the bench wrapped) start on their complete
    call, whatever the inner policy says."""

    inner: Policy
    names: frozenset[str]

    def decide(self, name: str) -> Start | None:
        start = self.inner.decide(name)
        if start is not None and name in self.names:
            return Start(start.spec, complete_only=True)
        return start

    def streams(self) -> dict[str, dict[str, str]]:
        return self.inner.streams()

    def requires_approval(self, name: str) -> bool:
        return self.inner.requires_approval(name)


def _clock(spans: dict[str, tuple[float, float]]) -> Any:
    """A LangChain callback handler that puts each tool run's (start, end) under its call id."""
    from uuid import UUID

    from langchain_core.callbacks import BaseCallbackHandler

    class Clock(BaseCallbackHandler):
        run_inline = True              # stamped where the tool runs, not in an executor

        def __init__(self) -> None:
            super().__init__()
            self.open: dict[UUID, tuple[Any, float]] = {}

        def on_tool_start(self, serialized: Any, input_str: str, *, run_id: UUID,
                          **kwargs: Any) -> None:
            self.open[run_id] = (kwargs.get("tool_call_id"), time.perf_counter())

        def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
            self._close(run_id)

        def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
            self._close(run_id)

        def _close(self, run_id: UUID) -> None:
            call_id, start = self.open.pop(run_id, (None, 0.0))
            if isinstance(call_id, str):
                spans[call_id] = (start, time.perf_counter())

    return Clock()


@dataclass
class Observed:
    """One message run one way: its record and what the ideal is computed from."""

    record: RunRecord
    t0: float
    decode_end: float
    marks: list[Mark]
    """Every parser event with the moment it was emitted."""
    timings: dict[int, CallTiming]
    """The session's, per call index."""
    clock: dict[str, tuple[float, float]]
    """(start, end) of each tool run the ``ToolNode`` made, by call id (LangChain callbacks)."""


def _labels(timings: Mapping[int, CallTiming]) -> dict[int, str]:
    counts = Counter(t.name for t in timings.values())
    seen: Counter[str] = Counter()
    out = {}
    for i, t in sorted(timings.items()):
        seen[t.name] += 1
        out[i] = t.name if counts[t.name] == 1 else f"{t.name} #{seen[t.name]}"
    return out


class ToolModes:
    """The user's tools as each mode runs them; :meth:`run` runs one message one way.

    ``sequential`` binds no tool to the session (nothing starts before the message is
    decoded) and the ``ToolNode`` runs every call; ``complete_call`` is
    ``Scheduler.session(complete_call=True)``'s policy; ``partial`` the tools' own strategies.
    Undecorated tools are wrapped in ``partial_tool`` for the last two and start on their
    complete call; ``side_effects=True`` tools are held, as ``Scheduler.session`` holds them.
    """

    def __init__(self, tools: Sequence[Any], sched: Scheduler) -> None:
        self.sched = sched
        self.plain: dict[str, Any] = {t.name: t for t in tools}
        self.strategies = {n: strategy_of(t) for n, t in self.plain.items()}
        self.early = {n: t if self.strategies[n].kind != "undecorated" else partial_tool(t)
                      for n, t in self.plain.items()}
        self.wrapped = frozenset(n for n, s in self.strategies.items() if s.kind == "undecorated")
        self._graphs: dict[tuple[str, tuple[str, ...]], Any] = {}

    def policy(self, mode: str, names: Sequence[str]) -> Policy:
        """What may start in ``mode`` for a message that may call the tools ``names``."""
        if mode == "sequential":
            return BoundTools(())
        bound = HoldSideEffects(BoundTools([self.early[n] for n in names]))
        if mode == "complete_call":
            return CompleteCallDispatch(bound)
        return _OnCompleteCall(bound, self.wrapped)

    def _graph(self, mode: str, names: tuple[str, ...]) -> Any:
        key = ("sequential" if mode == "sequential" else "early", names)
        if key not in self._graphs:
            tools = self.plain if mode == "sequential" else self.early
            self._graphs[key] = tool_graph([tools[n] for n in names])
        return self._graphs[key]

    async def warm_up(self, names: tuple[str, ...]) -> None:
        """Invoke each ``ToolNode`` graph once on a message without calls (no tool runs): the
        first invocation in a process costs ~0.1 s that would fall on whichever mode is first."""
        from langchain_core.messages import AIMessage

        for mode in ("sequential", "partial"):
            await self._graph(mode, names).ainvoke({"messages": [AIMessage(content="")]})

    async def run(self, name: str, transcript: Transcript, tool_format: str,
                  names: tuple[str, ...], mode: str, *, rate: float, run: int) -> Observed:
        """Replay ``transcript`` at ``rate`` tokens/s, run its calls in ``mode``, time it."""
        marks: list[Mark] = []
        streams = self.policy("partial", names).streams()   # every mode parses alike
        parser = StampingParser(
            _Retag(get_parser(tool_format, tools=list(names), streams=streams),
                   os.urandom(4).hex()),
            lambda now, events: marks.extend((now, ev) for ev in events))
        backend = Replay(transcript, tokens_per_s=rate, seed=run)
        request = ChatRequest([{"role": "user", "content": f"recorded message {name}"}])
        clock: dict[str, tuple[float, float]] = {}
        t0 = time.perf_counter()
        session = self.sched.session(policy=self.policy(mode, names))
        try:
            message, result, decode_end = await decode_message(backend, request, parser, session)
            out = await self._graph(mode, names).ainvoke({"messages": [message]},
                                                         config={"callbacks": [_clock(clock)]})
            end = time.perf_counter()
        finally:        # nothing of this run may be claimed by a later one
            for call_id in session.call_ids():
                self.sched.release(call_id, "the benchmark run ended")
        replies = [str(m.content) for m in out["messages"][1:]]
        record = RunRecord("transcripts", name, mode, rate, "replay", latency_s=end - t0,
                           decode_s=decode_end - t0, tokens=result.token_counts()[1],
                           aborted=result.abort is not None, run=run, result="\n".join(replies))
        record.spans.append(Span("decode", 0.0, decode_end - t0, "decode"))
        labels = _labels(session.timings)
        for i, timing in sorted(session.timings.items()):
            if timing.tool_start is not None and timing.tool_end is not None:
                start, stop = timing.tool_start, timing.tool_end     # ran under the library
            elif timing.call_id in clock:
                start, stop = clock[timing.call_id]                  # ran in the ToolNode
            else:
                continue
            record.spans.append(Span(labels[i], start - t0, stop - t0))
        return Observed(record, t0, decode_end, marks, dict(session.timings), clock)


def _final_at(strategy: Strategy, index: int, run: Observed) -> float | None:
    """When call ``index``'s start condition was met in the partial run ``run``."""
    if strategy.kind == "side_effects":
        return run.decode_end
    if strategy.kind == "call_start":
        kind: type = CallStarted
    else:
        kind = CallDone
        if strategy.kind == "start_on":
            seen: dict[Any, float] = {}
            for t, ev in run.marks:
                if (isinstance(ev, FieldDone) and ev.index == index and len(ev.path) == 1
                        and ev.path[0] in strategy.fields):
                    seen.setdefault(ev.path[0], t)
            if len(seen) == len(strategy.fields):
                return max(seen.values())
    return next((t for t, ev in run.marks if isinstance(ev, kind)
                 and getattr(ev, "index", None) == index), None)


def ideal_of(strategies: Mapping[str, Strategy], partial: Observed,
             sequential: Observed) -> float | None:
    """The pipeline bound of the partial run ``partial``, in seconds since its request began.

    One piece per call, final when its start condition was met in ``partial`` (see
    :class:`Strategy`), lasting the tool's time in ``sequential`` (the ``ToolNode``'s run of it);
    calls run concurrently. None when the run cannot give it: a tool without a whole-call
    strategy, an early abort, a call that ran again, a call missing from either run.
    """
    if partial.record.aborted or any(t.reran for t in partial.timings.values()):
        return None
    if sorted((i, t.name) for i, t in partial.timings.items()) != sorted(
            (i, t.name) for i, t in sequential.timings.items()):
        return None
    pieces = []
    for i, timing in sorted(partial.timings.items()):
        strategy = strategies.get(timing.name)
        ran = sequential.clock.get(sequential.timings[i].call_id)
        final = _final_at(strategy, i, partial) if strategy and strategy.whole_call else None
        if final is None or ran is None:
            return None
        pieces.append(Piece(timing.name, final, *ran))
    return ideal_latency(pieces, partial.decode_end) - partial.t0
