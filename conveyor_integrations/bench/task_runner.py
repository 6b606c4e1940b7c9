"""Run one whole agent task one way and time every turn: a real agent, from message to answer.

The agent is LangChain's ``create_agent`` over :class:`ChatConveyor` or LlamaIndex's
``FunctionAgent`` over :class:`ConveyorLLM`, holding the family's tools (:mod:`.task_tools`) as
``mode`` runs them: plain (``sequential``), started on their complete call (``complete_call``,
a scheduler whose sessions dispatch eagerly), with their partial strategies (``partial``), or
with those and speculative calls (``speculative``: the read-only kinds declare ``read_only`` and
their follow-ups, :attr:`~.task_tools.Kind.speculative`; ``learned``: ``read_only`` only, and
the predictions are learned from the task's own earlier turns).
The model is a :class:`StampedBackend` around ``Replay`` (the task's turns at a token rate) or
the real engine, forced to decode each recorded turn exactly; it notes when each turn's stream
began and when each delta arrived. After the run each turn's deltas go through the same parser
again, offline, and each event takes the arrival time of the delta that produced it: the
moments the fields, items, lines and statements became final (``d_i`` of the pipeline bound),
with no hook into the adapters. Each kind's trace is cut at each turn's start (the agent asks
the model again only once every tool of the previous turn has answered). Example::

    bench = TaskBench(FAMILIES["research"], env, "partial", framework="langchain")
    record = await bench.run(task, StampedBackend(Replay(list(task.turns), 50.0)), rate=50.0)
    bench.close()
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from ..backends.base import Backend, ChatRequest, Delta
from ..events import CallDone, Event, FieldDone, ItemDone, TextChunk
from ..parsing import get_parser
from ..policy import BoundTools
from ..scheduler import Scheduler
from ..session import RequestSession
from ..speculation import Speculation
from .task_records import TaskRecord, TurnRecord
from .task_tools import KINDS, Kind
from .tasks import Family, Task
from .workload_base import Env, Mark, Piece, ToolPart, Trace, ideal_latency

__all__ = ["StampedBackend", "TaskBench", "TurnStream"]

_MARKED = (FieldDone, TextChunk, ItemDone, CallDone)
_SPECULATIVE = ("speculative", "learned")


@dataclasses.dataclass
class TurnStream:
    """One model stream: when it began, each delta with its arrival time, when it ended."""

    start: float
    deltas: list[tuple[float, Delta]] = dataclasses.field(default_factory=list)
    end: float | None = None

    @property
    def usage(self) -> Mapping[str, Any]:
        """The usage the backend reported on its last delta (``{}`` without one)."""
        for _, d in reversed(self.deltas):
            if isinstance(d, dict) and d.get("usage"):
                return dict(d["usage"])
        return {}


class StampedBackend:
    """A backend that notes the time of every stream and delta of ``inner``.

    ``force(k)`` (optional) gives sampling keys for the k-th stream (the real engine is forced
    to decode turn k); ``on_turn(k)`` is called when the k-th stream begins, and ``before(k)``
    (a coroutine function) is awaited before it starts (inside the task's time: in the previous
    turn's gap).
    """

    def __init__(self, inner: Backend, *, force: Callable[[int], dict[str, Any]] | None = None,
                 on_turn: Callable[[int], None] | None = None,
                 before: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.inner, self.force, self.on_turn, self.before = inner, force, on_turn, before
        self.default_tool_format = getattr(inner, "default_tool_format", "hermes")
        self.streams: list[TurnStream] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """``inner``'s stream, stamped."""
        k = len(self.streams)
        if self.on_turn is not None:
            self.on_turn(k)
        if self.before is not None:
            await self.before(k)
        if self.force is not None:
            request = dataclasses.replace(request, sampling={**request.sampling, **self.force(k)})
        rec = TurnStream(time.perf_counter())
        self.streams.append(rec)
        async for delta in self.inner.stream(request):
            rec.deltas.append((time.perf_counter(), delta))
            yield delta
        rec.end = time.perf_counter()


class _EagerScheduler(Scheduler):
    """A scheduler whose sessions start every decorated tool on its complete call only."""

    def session(self, *args: Any, **kwargs: Any) -> RequestSession:
        kwargs["complete_call"] = True
        return super().session(*args, **kwargs)


class TaskBench:
    """One family in one mode and framework: its scheduler, tools and traces, reused per run."""

    def __init__(self, family: Family, env: Env, mode: str, *, framework: str = "langchain"
                 ) -> None:
        self.family, self.mode, self.framework = family, mode, framework
        self.sched = (_EagerScheduler() if mode == "complete_call" else
                      Scheduler(speculation=Speculation(max_per_request=16,
                                                        learn=mode == "learned"))
                      if mode in _SPECULATIVE else Scheduler())
        self.kinds = [KINDS[name] for name in family.kinds]
        self.traces = {k.name: Trace() for k in self.kinds}
        self.tools = [self._part(k, env).tool("partial" if mode in _SPECULATIVE else mode,
                                              self.sched, framework) for k in self.kinds]
        self._turn_traces: list[dict[str, Trace]] = []

    def _part(self, kind: Kind, env: Env) -> ToolPart:
        part = kind.part(env, self.traces[kind.name])
        if self.mode not in _SPECULATIVE:
            return part
        extra = {k: v for k, v in kind.speculative.items()      # learned: no declared follow-ups
                 if self.mode == "speculative" or k != "follow_up"}
        return dataclasses.replace(part, strategy={**part.strategy, **extra})

    def _cut(self, k: int) -> None:
        """A new turn begins: what the kinds recorded so far belongs to the previous one."""
        if k == 0:
            for trace in self.traces.values():
                trace.reset()
            self._turn_traces = []
            return
        snapshot = {}
        for name, trace in self.traces.items():
            snap = Trace()
            snap.spans, snap.executions = list(trace.spans), list(trace.executions)
            snapshot[name] = snap
            trace.reset()
        self._turn_traces.append(snapshot)

    def backend(self, inner: Backend, force: Callable[[int], dict[str, Any]] | None = None
                ) -> StampedBackend:
        """``inner`` stamped, cutting this bench's traces at each turn."""
        return StampedBackend(inner, force=force, on_turn=self._cut)

    async def run(self, task: Task, backend: StampedBackend, *, rate: float | None,
                  backend_name: str = "replay", run: int = 0) -> TaskRecord:
        """Run ``task`` through the agent from the user's message to its answer; time it."""
        before = self.sched.speculation.stats()
        t0 = time.perf_counter()
        if self.framework == "llamaindex":
            answer, results = await self._llamaindex(task, backend)
        else:
            answer, results = await self._langchain(task, backend)
        end = time.perf_counter()
        speculation = await self._speculation_since(before)
        self._cut(len(backend.streams))
        record = TaskRecord(self.family.name, task.name, self.mode, self.framework, rate,
                            backend_name, latency_s=end - t0, run=run, answer=answer,
                            results=results, speculation=speculation)
        for k, stream in enumerate(backend.streams):
            nxt = backend.streams[k + 1].start if k + 1 < len(backend.streams) else end
            record.turns.append(self._turn(k, stream, nxt, t0))
        bounds = [t.ideal_s for t in record.turns]
        if self.mode == "partial" and all(b is not None for b in bounds):
            record.ideal_s = sum(b for b in bounds if b is not None)
        return record

    async def _speculation_since(self, before: dict[str, Any]) -> dict[str, Any]:
        """The task's speculation counters: what is still held is a miss now (the task is over),
        and its waste is known once the runs have stopped (a bounded wait)."""
        spec = self.sched.speculation
        if self.mode not in _SPECULATIVE:
            return {}
        spec.close()
        for _ in range(500):
            if spec.stats()["running"] == 0:
                break
            await asyncio.sleep(0.01)
        after = spec.stats()
        out = {k: after[k] - before[k] for k in ("started", "hits", "misses", "refused")}
        out["wasted_s"] = round(after["wasted_s"] - before["wasted_s"], 6)
        return out

    def _turn(self, k: int, stream: TurnStream, nxt: float, t0: float) -> TurnRecord:
        marks, calls = self._marks(stream)
        traces = self._turn_traces[k] if k < len(self._turn_traces) else {}
        decode_end = stream.end or (stream.deltas[-1][0] if stream.deltas else stream.start)
        pieces: list[Piece] = []
        complete = True
        expected: Counter[str] = Counter()
        observed: Counter[str] = Counter()
        for kind in self.kinds:
            asked: Counter[str] = Counter()
            for call in calls:
                if call.name == kind.name:
                    asked += kind.expected(call.args)
            expected += asked
            trace = traces.get(kind.name)
            if trace is None:
                continue
            if self.mode in _SPECULATIVE:      # the unused speculative runs are not its work
                trace = _asked_only(trace, asked)
            observed += kind.observed(trace)
            got: list[Piece] = []
            ok = False
            if self.mode != "sequential":      # sequential: whole calls, no pieces to time
                got, _, ok = kind.pieces(trace, marks)
            if not ok:                         # show what ran; no bound from part of it
                complete = False
                got = [Piece(label, decode_end, s, e) for label, s, e in trace.spans] + got
            offset = len(pieces)
            pieces += [dataclasses.replace(p, deps=tuple(d + offset for d in p.deps)) for p in got]
        tools_end = max([p.end for p in pieces] or [decode_end])
        usage = stream.usage
        details = usage.get("prompt_tokens_details") or {}
        turn = TurnRecord(
            k, start=stream.start - t0, first_token_s=(stream.deltas[0][0] - stream.start)
            if stream.deltas else None, decode_end=decode_end - t0, tools_end=tools_end - t0,
            next_start=nxt - t0, tokens=len(stream.deltas), calls=[c.name for c in calls],
            work_expected=dict(expected), work_done=dict(observed),
            prompt_tokens=usage.get("prompt_tokens"), cached_tokens=details.get("cached_tokens"),
            spans=[(p.label, p.start - t0, p.end - t0) for p in pieces])
        if self.mode == "partial" and complete:
            turn.ideal_s = ideal_latency(pieces, decode_end) - stream.start
        return turn

    def _marks(self, stream: TurnStream) -> tuple[list[Mark], list[CallDone]]:
        """The turn's deltas through the parser again, each event stamped with its delta's
        arrival time; and the turn's complete calls."""
        names = [t.name if hasattr(t, "name") else t.metadata.get_name() for t in self.tools]
        streams = BoundTools(self.tools).streams()
        parser = get_parser("hermes", tools=names, streams=streams)
        marks: list[Mark] = []
        calls: list[CallDone] = []

        def note(now: float, events: list[Event]) -> None:
            for ev in events:
                if isinstance(ev, _MARKED):
                    marks.append((now, ev))
                if isinstance(ev, CallDone):
                    calls.append(ev)

        for now, delta in stream.deltas:
            if isinstance(delta, str):
                note(now, parser.feed(delta))
        note(stream.end or time.perf_counter(), parser.close())
        return marks, calls

    async def _langchain(self, task: Task, backend: StampedBackend) -> tuple[str, list[str]]:
        from langchain.agents import create_agent
        from langchain_core.messages import HumanMessage, ToolMessage

        from ..adapters.langchain import ChatConveyor

        model = ChatConveyor(backend=backend, scheduler=self.sched)
        agent = create_agent(model, tools=self.tools, system_prompt=self.family.system or None)
        out = await agent.ainvoke({"messages": [HumanMessage(task.prompt)]},
                                  {"recursion_limit": 4 * len(task.turns) + 4})
        msgs = out["messages"]
        return str(msgs[-1].content), [str(m.content) for m in msgs if isinstance(m, ToolMessage)]

    async def _llamaindex(self, task: Task, backend: StampedBackend) -> tuple[str, list[str]]:
        from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult

        from ..adapters.llamaindex import ConveyorLLM

        llm = ConveyorLLM(backend=backend, scheduler=self.sched)
        agent = FunctionAgent(tools=self.tools, llm=llm, system_prompt=self.family.system or None,
                              timeout=600)
        handler = agent.run(task.prompt, max_iterations=2 * len(task.turns) + 2)
        results = [str(ev.tool_output.content) async for ev in handler.stream_events()
                   if isinstance(ev, ToolCallResult)]
        answer = await handler
        return str(answer), results

    def close(self) -> None:
        """Close the HTTP client of the scheduler's loop; stop the scheduler."""
        from ..tools.search import aclose_shared_client

        try:
            self.sched.submit(aclose_shared_client()).result(timeout=10)
        finally:
            self.sched.close()


def _asked_only(trace: Trace, asked: Counter[str]) -> Trace:
    """``trace`` with only the spans of the work the turn's calls asked for (a speculative run
    nobody wrote is counted by the speculation's misses instead)."""
    out = Trace()
    out.spans = [sp for sp in trace.spans if sp[0] in asked]
    out.executions = list(trace.executions)
    return out
