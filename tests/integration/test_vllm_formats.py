"""Each model family's wire format end to end on the real engine (bundled SmolLM2 on CPU).

The bundled model writes Hermes calls; here it is forced (a structured-output choice of the
whole text) to decode a recorded message in another family's format, token by token, with
``tool_format`` set to that format. A ``start_on`` tool must start before the message ends and
run exactly once, and the message's ``tool_calls`` must be the recorded call. All tests share
the session's one engine.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("langchain_core")
from langchain_core.tools import tool

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.scheduler import Scheduler

pytestmark = pytest.mark.vllm
ASK = "What is the weather like in Oslo today?"
ARGS = {"city": "Oslo", "units": "metric"}

# One recorded assistant message per format, as that family's chat template writes a call of
# get_weather(city="Oslo", units="metric"); the call ends well after `city` is final.
MESSAGES: dict[str, str] = {
    "pythonic": "[get_weather(city='Oslo', units='metric')]",
    "qwen3_xml": ("I will look it up.\n<tool_call>\n<function=get_weather>\n<parameter=city>\n"
                  "Oslo\n</parameter>\n<parameter=units>\nmetric\n</parameter>\n</function>\n"
                  "</tool_call>"),
}


def make_weather(log: list[str]) -> Any:
    @tool
    def get_weather(city: str, units: str = "metric") -> str:
        """Current weather of a city."""
        log.append(city)
        time.sleep(0.2)
        return f"{city}: sunny ({units})"

    return get_weather


@pytest.mark.parametrize("fmt", sorted(MESSAGES))
def test_recorded_message_starts_its_tool_before_the_message_ends(
        fmt: str, vllm_engine: Any, sched: Scheduler) -> None:
    log: list[str] = []
    weather = partial_tool(make_weather(log), start_on=["city"])
    text = MESSAGES[fmt]
    model = ChatConveyor(backend=vllm_engine, tool_format=fmt, temperature=0.0,
                         max_tokens=400, structured_outputs={"choice": [text]})
    msg = model.bind_tools([weather]).invoke(ASK)
    meta = msg.response_metadata["conveyor"]
    assert meta["tool_format"] == fmt
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("get_weather", ARGS)]
    timing = meta["calls"][0]
    assert timing["early"] and timing["tool_start"] < timing["decode_end"]
    out = weather.invoke({**msg.tool_calls[0], "type": "tool_call"})
    assert out.content == "Oslo: sunny (metric)"
    assert log == ["Oslo"]                                   # exactly once
    assert sched.pending() == 0
