"""The ready tools drop into LangChain and LlamaIndex agents as they are: the framework's tool
wraps the decorated function, whose call claims the early result (by name and arguments)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conveyor_integrations.backends import Replay
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.tools.plan import arun_plan_text, plan_tool, run_plan_text

PLAN = '1. double(4)\n2. double(5)\n3. add("$1", "$2")\njoin()'
CALL = ('<tool_call>{"name": "run_plan", "arguments": {"plan": ' + json.dumps(PLAN)
        + "}}</tool_call>")
ANSWER = "The sum is 18."


def step_tools(log: list[str]) -> dict[str, Any]:
    def double(x: int) -> int:
        log.append(f"double({x})")
        return 2 * x

    def add(a: int, b: int) -> int:
        log.append("add")
        return int(a) + int(b)

    return {"double": double, "add": add}


def test_plan_tool_in_a_langchain_agent(sched: Scheduler) -> None:
    pytest.importorskip("langchain")
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import StructuredTool

    log: list[str] = []
    run_plan = plan_tool(step_tools(log))
    from conveyor_integrations.adapters.langchain import ChatConveyor

    agent = create_agent(ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=200)),
                         tools=[StructuredTool.from_function(run_plan)])
    msgs = agent.invoke({"messages": [HumanMessage("double 4 and 5 and add")]})["messages"]
    tm = next(m for m in msgs if isinstance(m, ToolMessage))
    assert tm.content == run_plan_text(step_tools([]), PLAN)
    assert sorted(log) == ["add", "double(4)", "double(5)"]        # each step once, early
    assert msgs[1].response_metadata["conveyor"]["calls"][0]["early"] is True
    assert msgs[-1].content == ANSWER and sched.pending() == 0


async def test_plan_tool_in_a_llamaindex_agent(sched: Scheduler) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
    from llama_index.core.tools import FunctionTool

    from conveyor_integrations.adapters.llamaindex import ConveyorLLM

    log: list[str] = []
    run_plan = plan_tool(step_tools(log))
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(fn=run_plan)],
                          llm=ConveyorLLM(backend=Replay([CALL, ANSWER], tokens_per_s=200)))
    handler = agent.run("double 4 and 5 and add")
    results = [e async for e in handler.stream_events() if isinstance(e, ToolCallResult)]
    assert str(await handler) == ANSWER
    assert results[0].tool_output.content == await arun_plan_text(step_tools([]), PLAN)
    assert sorted(log) == ["add", "double(4)", "double(5)"]
    assert sched.pending() == 0
