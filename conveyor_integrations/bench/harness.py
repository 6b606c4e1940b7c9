"""Run one transcript one way and time it: decode, then a real LangGraph ``ToolNode``.

Every mode goes through the same steps, so they differ only in when the tools start:

1. the backend streams the transcript (``Replay`` at a token rate, or the real engine forced to
   decode exactly it); the parser's events go to a session of the mode's scheduler, and the time
   each event was emitted is kept (``d_i`` of the pipeline bound);
2. the message becomes an ``AIMessage`` (with the aborted call, if decoding stopped early, as
   ``ChatConveyor`` does) and a compiled one-node LangGraph graph runs its ``ToolNode``; plain
   tools run there (``sequential``), decorated ones hand over their early results;
3. latency is the time from the request to the ``ToolNode``'s last message.

Example::

    bench = ModeBench(WORKLOADS["calculator"], env, "partial")
    record = await bench.run("tip", Replay(text, 50.0), rate=50.0)
    bench.close()
"""

from __future__ import annotations

import time
from typing import Any

from ..backends.base import Backend, ChatRequest
from ..events import CallDone, FieldDone, ItemDone, TextChunk
from ..parsing import get_parser
from ..policy import BoundTools
from ..scheduler import Scheduler
from ..session import RequestSession
from ..turn import TurnCollector, TurnResult, stream_turn
from .records import RunRecord, Span
from .workload_base import Env, Mark, StampingParser, Trace, Workload, ideal_latency

__all__ = ["ModeBench", "decode_message", "tool_graph"]

_MARKED = (FieldDone, TextChunk, ItemDone, CallDone)


def tool_graph(tools: list[Any]) -> Any:
    """A compiled LangGraph graph whose single node is ``ToolNode(tools)``."""
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    graph = StateGraph(MessagesState)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    return graph.compile()


class ModeBench:
    """One workload in one mode: its scheduler, tools and ``ToolNode`` graph, reused per run."""

    def __init__(self, workload: Workload, env: Env, mode: str) -> None:
        self.workload, self.mode = workload, mode
        self.sched = Scheduler()
        self.trace = Trace()
        self.tools = workload.tools(env, mode, self.sched, self.trace)
        self.graph = tool_graph(self.tools)
        self.schemas = [_schema(t) for t in self.tools]
        self.bound = BoundTools(self.tools)

    async def run(self, name: str, backend: Backend, *, rate: float | None,
                  backend_name: str = "replay", sampling: dict[str, Any] | None = None,
                  run: int = 0) -> RunRecord:
        """Decode transcript ``name`` from ``backend``, run the tools, time it all."""
        self.trace.reset()
        marks: list[Mark] = []
        parser = StampingParser(
            get_parser("hermes", streams=self.bound.streams()),
            lambda now, events: marks.extend((now, ev) for ev in events
                                             if isinstance(ev, _MARKED)))
        request = ChatRequest([{"role": "user", "content": f"benchmark task {name}"}], tools=self.schemas,
                              sampling=dict(sampling or {}))
        t0 = time.perf_counter()
        session = self.sched.session(tools=self.bound, complete_call=self.mode == "complete_call")
        message, result, decode_end = await decode_message(backend, request, parser, session)
        out = await self.graph.ainvoke({"messages": [message]})
        end = time.perf_counter()
        replies = [str(m.content) for m in out["messages"][1:]]
        record = RunRecord(self.workload.name, name, self.mode, rate, backend_name,
                           latency_s=end - t0, decode_s=decode_end - t0,
                           tokens=result.token_counts()[1], aborted=result.abort is not None,
                           run=run, result="\n".join(replies))
        record.spans.append(Span("decode", 0.0, decode_end - t0, "decode"))
        if self.mode == "partial":
            pieces, abort_at, complete = self.workload.pieces(self.trace, marks)
            complete = complete and not any(t.reran for t in session.timings.values())
            if complete and (pieces or not record.aborted):
                record.spans.extend(Span(p.label, p.start - t0, p.end - t0) for p in pieces)
                record.ideal_s = ideal_latency(pieces, decode_end,
                                               abort_at=abort_at if record.aborted else None) - t0
                return record
            record.incomplete = True      # show what ran; no bound from partial information
        record.spans.extend(Span(label, s - t0, e - t0) for label, s, e in self.trace.spans)
        return record

    def close(self) -> None:
        """Close the HTTP client of the scheduler's loop; stop the scheduler."""
        from ..tools.search import aclose_shared_client

        try:
            self.sched.submit(aclose_shared_client()).result(timeout=10)
        finally:
            self.sched.close()


async def decode_message(backend: Backend, request: ChatRequest, parser: Any,
                         session: RequestSession) -> tuple[Any, TurnResult, float]:
    """Decode one message through ``parser`` into ``session``: the ``AIMessage`` a framework
    gets (with the call that stopped decoding, as ``ChatConveyor`` gives it), the turn's result
    and when decoding ended."""
    from langchain_core.messages import AIMessage
    from langchain_core.messages.tool import tool_call

    collector = TurnCollector(session)
    async for delta, events in stream_turn(backend, request, parser=parser, session=session):
        collector.add(delta, events)
    decode_end = time.perf_counter()
    result = collector.result()
    calls = [tool_call(name=c.name, args=c.args, id=c.id) for c in result.calls]
    if result.aborted_call is not None:
        a = result.aborted_call
        calls.append(tool_call(name=a.name, args=a.args, id=a.id))
    return AIMessage(content=result.text, tool_calls=calls), result, decode_end


def _schema(tool: Any) -> dict[str, Any]:
    from langchain_core.utils.function_calling import convert_to_openai_tool

    return convert_to_openai_tool(tool)
