"""Raw-text wire formats through the adapters: the bound tools' schemas reach the parser, so a
format that writes values as text (Qwen3-Coder XML, GLM-4.5) gives the tool typed arguments."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")
from langchain_core.tools import tool

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import Replay

QWEN3 = ("<tool_call>\n<function=forecast>\n<parameter=city>\nOslo\n</parameter>\n"
         "<parameter=days>\n3\n</parameter>\n<parameter=hourly>\nfalse\n</parameter>\n"
         "</function>\n</tool_call>")

GLM45 = ("<tool_call>forecast\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n"
         "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n<arg_key>hourly</arg_key>\n"
         "<arg_value>false</arg_value>\n</tool_call>")
TEXTS = {"qwen3_xml": QWEN3, "glm45": GLM45}


def make_forecast(log: list[Any]) -> Any:
    @tool
    def forecast(city: str, days: int, hourly: bool = True) -> str:
        """The forecast of a city for some days."""
        log.append((city, days, hourly))
        return f"{city}: {days} days"

    return forecast


@pytest.mark.parametrize("fmt", sorted(TEXTS))
@pytest.mark.parametrize("decorated", [False, True])
def test_values_written_as_text_convert_by_the_tools_schema(fmt: str, decorated: bool) -> None:
    log: list[Any] = []
    forecast = make_forecast(log)
    if decorated:
        forecast = partial_tool(forecast, start_on=["city", "days", "hourly"])
    model = ChatConveyor(backend=Replay(TEXTS[fmt]), tool_format=fmt)
    msg = model.bind_tools([forecast]).invoke("Forecast for Oslo?")
    assert msg.tool_calls[0]["args"] == {"city": "Oslo", "days": 3, "hourly": False}
    out = forecast.invoke({**msg.tool_calls[0], "type": "tool_call"})
    assert out.content == "Oslo: 3 days"
    assert log == [("Oslo", 3, False)]
