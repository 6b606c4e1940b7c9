"""Speculative calls in real agents: LangChain's ``create_agent`` and LlamaIndex's FunctionAgent.

The model (a Replay) writes a search, then fetches two of the three pages it found, then
answers. The search's ``follow_up`` predicts a fetch of each page. The request that writes the
fetch follows the search's call through the agent's own history (its tool message), so the
adapters find the held runs without any setup: each page the model fetches ran once, before the
model wrote it, and the agent sees exactly what the undecorated fetch returns.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest

from conveyor_integrations import Prediction, Scheduler, partial_tool
from conveyor_integrations.backends import Replay
from conveyor_integrations.bench.transcripts import hermes

PAGES = ["https://a.example/1", "https://a.example/2", "https://a.example/3"]
TURNS = [hermes("Searching.", ("search", {"query": "heat pumps"})),
         hermes("Reading two of them.", ("fetch", {"urls": PAGES[:2]})),
         "Heat pumps are cheaper to run."]
SEQUENTIAL_FETCH = "\n".join(f"text of {u}" for u in PAGES[:2])


def follow_up(args: dict[str, Any], result: str) -> list[Prediction]:
    return [Prediction("fetch", {"urls": [u]}) for u in result.split()]


def tools(log: Counter[str], lock: threading.Lock) -> tuple[Any, Any]:
    @partial_tool(start_on=["query"], read_only=True, follow_up=follow_up)
    def search(query: str) -> str:
        """Search the web."""
        return " ".join(PAGES)

    @partial_tool(items="urls", combine="\n".join, read_only=True)
    def fetch(urls: list[str]) -> str:
        """Fetch web pages."""
        with lock:
            log.update(urls)
        time.sleep(0.3)
        return "\n".join(f"text of {u}" for u in urls)

    return search, fetch


def check(log: Counter[str], sched: Scheduler, fetched: str) -> None:
    assert fetched == SEQUENTIAL_FETCH
    deadline = time.monotonic() + 10
    while sched.speculation.stats()["running"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log == Counter(PAGES)                   # the two written pages ran once each
    stats = sched.speculation.stats()
    assert (stats["hits"], stats["misses"]) == (2, 1)


def test_langchain_agent_takes_the_held_fetches(sched: Scheduler) -> None:
    pytest.importorskip("langchain")
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.tools import StructuredTool

    from conveyor_integrations.adapters.langchain import ChatConveyor

    log: Counter[str] = Counter()
    search, fetch = tools(log, threading.Lock())
    lc_tools = [StructuredTool.from_function(search), StructuredTool.from_function(fetch)]
    model = ChatConveyor(backend=Replay(TURNS, tokens_per_s=400), scheduler=sched)
    out = create_agent(model, tools=lc_tools).invoke(
        {"messages": [HumanMessage("Heat pumps?")]})
    msgs = out["messages"]
    results = [m.content for m in msgs if isinstance(m, ToolMessage)]
    assert msgs[-1].content == TURNS[-1] and len(results) == 2
    check(log, sched, str(results[1]))
    fetch_turn = [m for m in msgs if isinstance(m, AIMessage)][1]
    meta = fetch_turn.response_metadata["conveyor"]
    assert meta["calls"][0]["speculated"] == 2
    assert meta["speculation"]["started"] == 3


def test_llamaindex_agent_takes_the_held_fetches(sched: Scheduler) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
    from llama_index.core.tools import FunctionTool

    from conveyor_integrations.adapters.llamaindex import ConveyorLLM

    log: Counter[str] = Counter()

    async def main() -> list[str]:
        search, fetch = tools(log, threading.Lock())
        agent = FunctionAgent(
            tools=[FunctionTool.from_defaults(fn=search), FunctionTool.from_defaults(fn=fetch)],
            llm=ConveyorLLM(backend=Replay(TURNS, tokens_per_s=400), scheduler=sched))
        handler = agent.run(user_msg="Heat pumps?")
        results = [str(ev.tool_output.content) async for ev in handler.stream_events()
                   if isinstance(ev, ToolCallResult)]
        answer = await handler
        assert str(answer) == TURNS[-1]
        return results

    results = asyncio.run(main())
    assert len(results) == 2
    check(log, sched, results[1])


def test_callback_handler_on_chatopenai_takes_the_held_fetches(sched: Scheduler) -> None:
    """The handler on a model that is not ours (ChatOpenAI against a local server) reads the
    follows from the request's messages too."""
    pytest.importorskip("langchain_openai")
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import StructuredTool
    from langchain_openai import ChatOpenAI

    from conveyor_integrations.adapters.langchain import ConveyorCallbackHandler
    from tests.fake_openai_server import FakeOpenAIServer, tool_call_deltas

    first = tool_call_deltas("call_s", "search", {"query": "heat pumps"}, piece=3)
    first[-1]["finish_reason"] = "tool_calls"
    second = tool_call_deltas("call_f", "fetch", {"urls": PAGES[:2]}, piece=3)
    second[-1]["finish_reason"] = "tool_calls"
    answer = [{"role": "assistant", "content": TURNS[-1]}, {"finish_reason": "stop"}]
    log: Counter[str] = Counter()
    search, fetch = tools(log, threading.Lock())
    lc_tools = [StructuredTool.from_function(search), StructuredTool.from_function(fetch)]
    handler = ConveyorCallbackHandler(tools=lc_tools)
    with FakeOpenAIServer([first, second, answer], delay_s=0.02) as server:
        llm = ChatOpenAI(base_url=server.base_url, api_key="x", model="fake", streaming=True,
                         callbacks=[handler])
        out = create_agent(llm, tools=lc_tools).invoke({"messages": [HumanMessage("?")]})
    results = [m.content for m in out["messages"] if isinstance(m, ToolMessage)]
    check(log, sched, str(results[1]))
