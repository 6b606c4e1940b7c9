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
_JSON = '{"city": "Oslo", "units": "metric"}'
MESSAGES: dict[str, tuple[str, str]] = {
    "pythonic": ("pythonic", "[get_weather(city='Oslo', units='metric')]"),
    "qwen3_xml": ("qwen3_xml", ("I will look it up.\n<tool_call>\n<function=get_weather>\n"
                  "<parameter=city>\nOslo\n</parameter>\n<parameter=units>\nmetric\n"
                  "</parameter>\n</function>\n</tool_call>")),
    "harmony": ("harmony", ("<|channel|>analysis<|message|>The user wants the weather.<|end|>"
                "<|start|>assistant<|channel|>commentary to=functions.get_weather "
                f"<|constrain|>json<|message|>{_JSON}<|call|>")),
    "deepseek_v3": ("deepseek_v3", ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function"
                    f"<｜tool▁sep｜>get_weather\n```json\n{_JSON}\n```<｜tool▁call▁end｜>"
                    "<｜tool▁calls▁end｜>")),
    "deepseek_v3.1": ("deepseek_v3", ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather"
                      f"<｜tool▁sep｜>{_JSON}<｜tool▁call▁end｜><｜tool▁calls▁end｜>")),
    "glm45": ("glm45", ("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo"
              "</arg_value>\n<arg_key>units</arg_key>\n<arg_value>metric</arg_value>\n"
              "</tool_call>")),
    "kimi_k2": ("kimi_k2", ("<|tool_calls_section_begin|><|tool_call_begin|>"
                f"functions.get_weather:0<|tool_call_argument_begin|>{_JSON}<|tool_call_end|>"
                "<|tool_calls_section_end|>")),
}

def make_weather(log: list[str]) -> Any:
    @tool
    def get_weather(city: str, units: str = "metric") -> str:
        """Current weather of a city."""
        log.append(city)
        time.sleep(0.2)
        return f"{city}: sunny ({units})"

    return get_weather


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_recorded_message_starts_its_tool_before_the_message_ends(
        case: str, vllm_engine: Any, sched: Scheduler) -> None:
    log: list[str] = []
    weather = partial_tool(make_weather(log), start_on=["city"])
    fmt, text = MESSAGES[case]
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
