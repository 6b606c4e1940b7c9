"""Promise 1 of the redesign: a request starts early only the decorated tool OBJECTS bound to it.

Names are not identity: an undecorated tool that happens to share a decorated tool's name, a
re-definition of a tool in a notebook, or a decoration done after the agent was built must not
make some other body run. Every test counts body executions and asserts exactly one, of the
right body.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain")
pytest.importorskip("llama_index.core")

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import StructuredTool, tool
from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.tools import FunctionTool

from conveyor_integrations import Scheduler, partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.adapters.llamaindex import ConveyorLLM
from conveyor_integrations.backends import Replay

CALL = ('Let me look.\n<tool_call>{"name": "search", "arguments": {"query": "paris"}}'
        '</tool_call>')
ANSWER = "Done."


def lc_search(tag: str, log: list[str]) -> Any:
    """A LangChain ``search`` tool whose body logs ``tag`` and returns a result naming it."""

    def search(query: str) -> str:
        """Search the web."""
        log.append(tag)
        return f"{tag} result for {query}"

    return StructuredTool.from_function(search)


def li_search(tag: str, log: list[str]) -> FunctionTool:
    def search(query: str) -> str:
        """Search the web."""
        log.append(tag)
        return f"{tag} result for {query}"

    return FunctionTool.from_defaults(fn=search)


def run_lc_agent(tools: list[Any], scheduler: Scheduler | None) -> list[Any]:
    model = ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=2000), scheduler=scheduler)
    agent = create_agent(model, tools=tools)
    return list(agent.invoke({"messages": [HumanMessage("search paris")]})["messages"])


def tool_message(msgs: list[Any]) -> ToolMessage:
    found = [m for m in msgs if isinstance(m, ToolMessage)]
    assert len(found) == 1, msgs
    return found[0]


# scheduler given explicitly to partial_tool and ChatConveyor, or the default one (the conftest
# fixture installs it as the default) used by both implicitly
@pytest.mark.parametrize("explicit", [True, False], ids=["explicit_scheduler", "default"])
def test_undecorated_tool_with_a_decorated_tools_name_runs_its_own_body(
        explicit: bool, sched: Scheduler) -> None:
    log: list[str] = []
    scheduler = sched if explicit else None
    decorated = partial_tool(lc_search("decorated", log), start_on=["query"],
                             scheduler=scheduler)
    assert decorated.name == "search"
    plain = lc_search("plain", log)

    msgs = run_lc_agent([plain], scheduler)

    assert log == ["plain"]                       # the decorated body never ran
    assert tool_message(msgs).content == "plain result for paris"
    assert msgs[-1].content == ANSWER
    assert sched.pending() == 0


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit_scheduler", "default"])
@pytest.mark.parametrize("bound", ["v3_undecorated", "v1_decorated"])
def test_notebook_redefinition_runs_only_the_bound_objects_body(
        bound: str, explicit: bool, sched: Scheduler) -> None:
    scheduler = sched if explicit else None
    log: list[str] = []
    v1 = partial_tool(lc_search("v1", log), start_on=["query"], scheduler=scheduler)
    v2 = partial_tool(lc_search("v2", log), start_on=["query"], scheduler=scheduler)
    assert v1.name == v2.name == "search"
    v3 = lc_search("v3", log)
    tag, given = ("v3", v3) if bound == "v3_undecorated" else ("v1", v1)

    msgs = run_lc_agent([given], scheduler)

    assert log == [tag]                           # the bound object's body, once; not v2's
    assert tool_message(msgs).content == f"{tag} result for paris"
    assert sched.pending() == 0


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit_scheduler", "default"])
def test_decorating_after_the_agent_was_built_does_not_run_the_body_twice(
        explicit: bool, sched: Scheduler) -> None:
    scheduler = sched if explicit else None
    log: list[str] = []

    @tool
    def search(query: str) -> str:
        """Search the web."""
        log.append(query)
        return f"result for {query}"

    model = ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=2000), scheduler=scheduler)
    agent = create_agent(model, tools=[search])
    fast = partial_tool(search, start_on=["query"], scheduler=scheduler)  # kept, not given
    assert fast is not None

    msgs = list(agent.invoke({"messages": [HumanMessage("search paris")]})["messages"])

    assert log == ["paris"]                       # exactly once
    assert tool_message(msgs).content == "result for paris"
    assert sched.pending() == 0


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit_scheduler", "default"])
async def test_llamaindex_undecorated_tool_with_a_decorated_tools_name_runs_its_own_body(
        explicit: bool, sched: Scheduler) -> None:
    scheduler = sched if explicit else None
    log: list[str] = []
    decorated = partial_tool(li_search("decorated", log), start_on=["query"],
                             scheduler=scheduler)
    assert decorated.metadata.get_name() == "search"
    plain = li_search("plain", log)

    llm = ConveyorLLM(backend=Replay([CALL, ANSWER], tokens_per_s=2000), scheduler=scheduler)
    handler = FunctionAgent(tools=[plain], llm=llm).run(user_msg="search paris")
    events = [ev async for ev in handler.stream_events()]
    answer = str(await handler)

    assert log == ["plain"]
    results = [e for e in events if isinstance(e, ToolCallResult)]
    assert [r.tool_output.content for r in results] == ["plain result for paris"]
    assert answer == ANSWER
    assert sched.pending() == 0
