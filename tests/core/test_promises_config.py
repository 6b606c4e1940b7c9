"""Promise 5 of the redesign: misconfiguration is loud, and the default scheduler is not a trap.

Misspelt ``start_on`` fields, a string where a list belongs, two different tools under one name
bound to one request, and a callback handler on a model that does not stream all fail (or warn)
where they are made, not silently at run time. Replacing the default scheduler after decorating
does not switch the decorated tools off.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

pytest.importorskip("langchain")
pytest.importorskip("langchain_openai")
pytest.importorskip("llama_index.core")

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import StructuredTool, tool
from langchain_openai import ChatOpenAI
from llama_index.core.tools import FunctionTool

from conveyor_integrations import (
    Scheduler,
    default_scheduler,
    partial_tool,
    set_default_scheduler,
)
from conveyor_integrations.adapters.langchain import ChatConveyor, ConveyorCallbackHandler
from conveyor_integrations.backends import Replay
from tests.fake_openai_server import FakeOpenAIServer

CALL = ('Working on it.\n<tool_call>{"name": "weather", "arguments": {"city": "Paris"}}'
        "</tool_call>")
ANSWER = "Sunny."


def weather_fn(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def langchain_tool() -> Any:
    return StructuredTool.from_function(weather_fn)


def llamaindex_tool() -> Any:
    return FunctionTool.from_defaults(fn=weather_fn)


def plain_function() -> Any:
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    return weather


KINDS = {"langchain": langchain_tool, "llamaindex": llamaindex_tool, "function": plain_function}


@pytest.mark.parametrize("kind", list(KINDS))
def test_start_on_an_unknown_field_is_a_value_error_naming_it(kind: str,
                                                              sched: Scheduler) -> None:
    with pytest.raises(ValueError, match="town"):
        partial_tool(KINDS[kind](), start_on=["town"])


@pytest.mark.parametrize("kind", list(KINDS))
def test_start_on_a_string_is_a_type_error(kind: str, sched: Scheduler) -> None:
    with pytest.raises(TypeError):
        partial_tool(KINDS[kind](), start_on="city")


def two_weathers(log: list[str]) -> tuple[Any, Any]:
    @tool
    def weather(city: str) -> str:
        """The weather in a city."""
        log.append("a")
        return "a"

    a = partial_tool(weather, start_on=["city"])

    @tool("weather")
    def weather_b(city: str) -> str:
        """The weather in a city, from another service."""
        log.append("b")
        return "b"

    b = partial_tool(weather_b, start_on=["city"])
    assert a.name == b.name == "weather"
    return a, b


def test_two_decorated_tools_with_one_name_in_bind_tools_is_a_value_error(
        sched: Scheduler) -> None:
    log: list[str] = []
    a, b = two_weathers(log)
    model = ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=2000))
    with pytest.raises(ValueError, match="weather"):
        model.bind_tools([a, b])
    assert log == []


def test_two_decorated_tools_with_one_name_in_the_handler_is_a_value_error(
        sched: Scheduler) -> None:
    log: list[str] = []
    a, b = two_weathers(log)
    with pytest.raises(ValueError, match="weather"):
        ConveyorCallbackHandler(tools=[a, b])
    assert log == []


def test_handler_on_a_model_that_does_not_stream_warns(sched: Scheduler) -> None:
    weather = partial_tool(langchain_tool(), start_on=["city"])
    handler = ConveyorCallbackHandler(tools=[weather])
    turn = [{"role": "assistant", "content": ANSWER}, {"finish_reason": "stop"}]
    with FakeOpenAIServer([turn]) as server:
        llm = ChatOpenAI(base_url=server.base_url, api_key="x", model="fake", streaming=False,
                         max_retries=0, callbacks=[handler])
        # the fake server answers only in SSE, which a non-streaming client cannot read;
        # the warning is what this test is about, not the reply
        with pytest.warns(UserWarning, match="stream"), contextlib.suppress(ValueError):
            llm.invoke("weather in Paris?")


def test_replacing_the_default_scheduler_after_decorating_keeps_the_tool_early(
        sched: Scheduler) -> None:
    assert default_scheduler() is sched
    log: list[str] = []

    @tool
    def weather(city: str) -> str:
        """The weather in a city."""
        log.append(city)
        return f"sunny in {city}"

    fast = partial_tool(weather, start_on=["city"])          # registered with the default: sched
    replacement = Scheduler(claim_timeout=5.0)
    set_default_scheduler(replacement)
    try:
        model = ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=2000))  # no scheduler
        msgs = list(create_agent(model, tools=[fast]).invoke(
            {"messages": [HumanMessage("weather in Paris?")]})["messages"])
    finally:
        set_default_scheduler(sched)
        replacement.close()

    assert log == ["Paris"]                                   # exactly once
    assert [m.content for m in msgs if isinstance(m, ToolMessage)] == ["sunny in Paris"]
    assert msgs[1].response_metadata["conveyor"]["calls"][0]["early"] is True
    assert sched.pending() == 0
