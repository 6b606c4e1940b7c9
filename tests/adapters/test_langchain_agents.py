"""ChatConveyor in real LangChain agents: create_agent and a LangGraph StateGraph with ToolNode."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("langchain")
import itertools

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import Replay
from conveyor_integrations.scheduler import Scheduler

CALL = ('Let me look that up.\n<tool_call>{"name": "web_search", "arguments": '
        '{"query": "weather in Paris", "k": 3}}</tool_call>')
ANSWER = "It is sunny in Paris."


def make_search(log: list[str]) -> Any:
    @tool
    def web_search(query: str, k: int = 3) -> str:
        """Search the web and return the top k results."""
        log.append(query)
        time.sleep(0.2)
        return f"top {k} results for {query}: sunny"

    return web_search


def run_agent(kind: str, model: ChatConveyor, search: Any) -> list[Any]:
    question = {"messages": [HumanMessage("What is the weather in Paris?")]}
    if kind == "create_agent":
        agent = create_agent(model, tools=[search])
    else:
        graph = StateGraph(MessagesState)
        bound = model.bind_tools([search])
        graph.add_node("model", lambda state: {"messages": [bound.invoke(state["messages"])]})
        graph.add_node("tools", ToolNode([search]))
        graph.add_edge(START, "model")
        graph.add_conditional_edges("model", tools_condition)
        graph.add_edge("tools", "model")
        agent = graph.compile()
    return list(agent.invoke(question)["messages"])


@pytest.mark.parametrize("kind", ["create_agent", "state_graph"])
def test_tool_starts_early_runs_once_and_answer_matches(kind: str, sched: Scheduler) -> None:
    plain_log: list[str] = []
    plain = run_agent(kind, ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=200)),
                      make_search(plain_log))

    log: list[str] = []
    search = partial_tool(make_search(log), start_on=["query"])
    msgs = run_agent(kind, ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=200)), search)

    assert [type(m) for m in msgs] == [type(m) for m in plain]
    assert msgs[-1].content == plain[-1].content == ANSWER
    tool_msgs = [m for m in msgs if isinstance(m, ToolMessage)]
    assert [m.content for m in tool_msgs] == [m.content for m in plain if isinstance(m, ToolMessage)]
    assert log == ["weather in Paris"] and plain_log == ["weather in Paris"]   # exactly once

    first: AIMessage = msgs[1]
    timing = first.response_metadata["conveyor"]["calls"][0]
    assert timing["early"] is True
    assert timing["tool_start"] < timing["args_final"] < timing["decode_end"]
    assert first.tool_calls[0]["args"] == {"query": "weather in Paris", "k": 3}
    assert first.usage_metadata["output_tokens"] > 0
    assert sched.pending() == 0


async def test_async_agent(sched: Scheduler) -> None:
    log: list[str] = []
    search = partial_tool(make_search(log), start_on=["query"])
    agent = create_agent(ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=200)),
                         tools=[search])
    out = await agent.ainvoke({"messages": [HumanMessage("weather?")]})
    assert out["messages"][-1].content == ANSWER
    assert log == ["weather in Paris"]
    assert out["messages"][1].response_metadata["conveyor"]["calls"][0]["early"] is True


def test_parallel_calls_each_start_when_their_own_arguments_are_final(sched: Scheduler) -> None:
    text = "".join(
        f'<tool_call>{{"name": "web_search", "arguments": {{"query": "q{i}", '
        f'"k": 3}}}}</tool_call>\n' for i in range(3))
    log: list[str] = []
    search = partial_tool(make_search(log), start_on=["query"])
    msg = ChatConveyor(backend=Replay(text, tokens_per_s=100)).bind_tools([search]).invoke("go")
    calls = msg.response_metadata["conveyor"]["calls"]
    assert [c["name"] for c in calls] == ["web_search"] * 3
    for c, nxt in itertools.pairwise(calls):
        assert c["tool_start"] < nxt["seen"]        # started before the next call was even seen
    results = [search.invoke({"type": "tool_call", "id": c["id"], "name": c["name"],
                              "args": c["args"]}) for c in msg.tool_calls]
    assert [r.content for r in results] == [f"top 3 results for q{i}: sunny" for i in range(3)]
    assert sorted(log) == ["q0", "q1", "q2"]


def test_different_final_arguments_run_the_tool_again(sched: Scheduler) -> None:
    log: list[str] = []
    search = partial_tool(make_search(log), start_on=["query"])
    msg = ChatConveyor(backend=Replay(CALL, tokens_per_s=500)).bind_tools([search]).invoke("go")
    call = msg.tool_calls[0]
    edited = {**call, "args": {"query": "weather in Lyon"}, "type": "tool_call"}
    out = search.invoke(edited)
    assert out.content == "top 3 results for weather in Lyon: sunny"
    assert log == ["weather in Paris", "weather in Lyon"]


@pytest.mark.parametrize("decorate", [False, True])
def test_tool_errors_are_handled_as_langchain_does(decorate: bool, sched: Scheduler) -> None:
    from langchain_core.tools import ToolException

    def build(exc: Exception, handle: bool) -> Any:
        @tool
        def web_search(query: str, k: int = 3) -> str:
            """Search."""
            raise exc

        web_search.handle_tool_error = handle
        return partial_tool(web_search, start_on=["query"]) if decorate else web_search

    def agent(t: Any) -> Any:
        return create_agent(ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=500)),
                            tools=[t])

    handled = build(ToolException("search backend is down"), True)
    msgs = agent(handled).invoke({"messages": [HumanMessage("weather?")]})["messages"]
    tm = next(m for m in msgs if isinstance(m, ToolMessage))
    assert tm.status == "error" and tm.content == "search backend is down"
    with pytest.raises(ValueError, match="crashed"):     # unhandled errors propagate, as before
        agent(build(ValueError("crashed"), False)).invoke({"messages": [HumanMessage("w?")]})
    assert sched.pending() == 0


def test_undecorated_tools_behave_as_before(sched: Scheduler) -> None:
    log: list[str] = []
    agent = create_agent(ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=500)),
                         tools=[make_search(log)])
    msgs = agent.invoke({"messages": [HumanMessage("weather?")]})["messages"]
    assert msgs[-1].content == ANSWER and log == ["weather in Paris"]
    assert msgs[1].response_metadata["conveyor"]["calls"][0]["early"] is False
