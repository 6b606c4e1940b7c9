"""A FunctionAgent on the in-process vLLM engine (bundled SmolLM2-135M on CPU).

Uses the session's one engine (the ``vllm_engine`` fixture); skips where vLLM, the bundled model
or that fixture is not available to this folder.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("llama_index.core")
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCallResult
from llama_index.core.tools import FunctionTool

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.llamaindex import ConveyorLLM
from conveyor_integrations.scheduler import Scheduler

pytestmark = pytest.mark.vllm


def _engine(request: pytest.FixtureRequest) -> Any:
    try:
        return request.getfixturevalue("vllm_engine")
    except pytest.FixtureLookupError:
        pytest.skip("the vllm_engine fixture is not visible from tests/adapters "
                    "(it lives in tests/vllm_fixtures.py)")


def make_weather(log: list[str]) -> FunctionTool:
    def get_weather(city: str) -> str:
        """Current weather of a city."""
        log.append(city)
        time.sleep(0.3)
        return f"{city}: sunny, 24 degrees"

    # return_direct: the tool's result is the answer, so a 135M model cannot loop on tool calls
    return FunctionTool.from_defaults(fn=get_weather, return_direct=True)


async def _run(engine: Any, tool: Any) -> tuple[str, list[Any]]:
    llm = ConveyorLLM(backend=engine, temperature=0.0, max_tokens=48, seed=0)
    agent = FunctionAgent(tools=[tool], llm=llm, initial_tool_choice="get_weather")
    handler = agent.run("What is the weather like in Paris today?")
    events = [ev async for ev in handler.stream_events()]
    return str(await handler), events


async def test_function_agent_on_vllm(request: pytest.FixtureRequest, sched: Scheduler) -> None:
    engine = _engine(request)
    plain_log: list[str] = []
    plain_answer, plain_events = await _run(engine, make_weather(plain_log))

    log: list[str] = []
    answer, events = await _run(engine, partial_tool(make_weather(log), start_on=["city"]))

    assert log == plain_log and len(log) == 1                      # exactly once, same call
    results = [e for e in events if isinstance(e, ToolCallResult)]
    assert [r.tool_output.content for r in results] == [
        r.tool_output.content for r in plain_events if isinstance(r, ToolCallResult)]
    first = next(e for e in events if isinstance(e, AgentOutput))
    timing = first.raw["conveyor"]["calls"][0]
    assert timing["early"] is True and timing["tool_start"] <= timing["decode_end"]
    assert answer == plain_answer == results[0].tool_output.content
    assert sched.pending() == 0
