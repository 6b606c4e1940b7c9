"""ConveyorCallbackHandler on a chat model that is not ours: ChatOpenAI against a local server."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

pytest.importorskip("langchain_openai")
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ConveyorCallbackHandler
from conveyor_integrations.scheduler import Scheduler
from tests.fake_openai_server import FakeOpenAIServer, tool_call_deltas

ARGS = {"query": "weather in Paris", "k": 3}


def turns() -> list[list[dict[str, Any]]]:
    first = tool_call_deltas("call_abc", "web_search", ARGS, piece=3)
    first[-1]["finish_reason"] = "tool_calls"
    return [first, [{"role": "assistant", "content": "Sunny."}, {"finish_reason": "stop"}]]


def make_search(log: list[tuple[str, float]]) -> Any:
    @tool
    def web_search(query: str, k: int = 3) -> str:
        """Search the web."""
        log.append((query, time.perf_counter()))
        return f"results for {query}: sunny"

    return web_search


def state_graph(llm: Any, search: Any) -> Any:
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    bound = llm.bind_tools([search])
    graph = StateGraph(MessagesState)
    graph.add_node("model", lambda state: {"messages": [bound.invoke(state["messages"])]})
    graph.add_node("tools", ToolNode([search]))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    return graph.compile()


@pytest.mark.parametrize(("kind", "use_async"), [("create_agent", False),
                                                 ("create_agent", True),
                                                 ("state_graph", False)])
async def test_handler_starts_tools_on_chatopenai_stream(kind: str, use_async: bool,
                                                         sched: Scheduler) -> None:
    log: list[tuple[str, float]] = []
    search = partial_tool(make_search(log), start_on=["query"])
    handler = ConveyorCallbackHandler(tools=[search])
    with FakeOpenAIServer(turns(), delay_s=0.02) as server:
        llm = ChatOpenAI(base_url=server.base_url, api_key="x", model="fake", streaming=True,
                         callbacks=[handler])
        agent = (create_agent(llm, tools=[search]) if kind == "create_agent"
                 else state_graph(llm, search))
        question = {"messages": [HumanMessage("weather?")]}
        # a sync caller has no running loop: invoke from a thread (invoke() on this loop's
        # thread would block the loop that the handler's session runs on)
        out = (await agent.ainvoke(question) if use_async
               else await asyncio.to_thread(agent.invoke, question))
    msgs = out["messages"]
    assert msgs[-1].content == "Sunny."
    tm = next(m for m in msgs if isinstance(m, ToolMessage))
    assert tm.content == "results for weather in Paris: sunny" and tm.tool_call_id == "call_abc"
    assert [q for q, _ in log] == ["weather in Paris"]            # exactly once
    timing = handler.sessions[0].timings[0]
    assert timing.early and timing.tool_start < timing.args_final  # before the call was complete
    assert sched.pending() == 0


def test_sync_invoke_on_a_thread_whose_loop_runs(sched: Scheduler) -> None:
    """A notebook cell: a sync ``invoke`` on the thread of a running (and so blocked) loop.
    The handler's session must not live on that loop, or the early run never runs and the
    tool's claim waits for ever."""
    log: list[tuple[str, float]] = []
    search = partial_tool(make_search(log), start_on=["query"])
    handler = ConveyorCallbackHandler(tools=[search])
    box: list[Any] = []

    async def cell() -> None:           # sync code inside a coroutine, as ipykernel runs it
        llm = ChatOpenAI(base_url=server.base_url, api_key="x", model="fake", streaming=True,
                         callbacks=[handler])
        box.append(create_agent(llm, tools=[search]).invoke(
            {"messages": [HumanMessage("weather?")]}))

    with FakeOpenAIServer(turns(), delay_s=0.02) as server:
        worker = threading.Thread(target=asyncio.run, args=(cell(),), daemon=True)
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), "the agent hung"
    assert box and box[0]["messages"][-1].content == "Sunny."
    assert [q for q, _ in log] == ["weather in Paris"]            # exactly once
    assert handler.sessions[0].timings[0].early
