"""Partial execution on the real vLLM (bundled SmolLM2 on CPU): in-process and `vllm serve`.

The in-process tests share the session's one engine; the server tests share one server process
for this module. Calls are forced (a named tool choice, or a structured-output choice of the whole
text) so that a 135M model writes well-formed calls; the decoding is the engine's own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

pytest.importorskip("langchain_core")
from langchain_core.tools import tool

from conveyor_integrations import EarlyAbort, partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import BackendError
from conveyor_integrations.events import FieldDone
from conveyor_integrations.policy import BoundTools
from conveyor_integrations.scheduler import Scheduler

pytestmark = pytest.mark.vllm
ASK = "What is the weather like in Paris today?"


def make_weather(log: list[str]) -> Any:
    @tool
    def get_weather(city: str) -> str:
        """Current weather of a city."""
        log.append(city)
        time.sleep(0.3)
        return f"{city}: sunny"

    return get_weather


def make_record(log: list[str]) -> Any:
    @tool
    def record(city: str, note: str) -> str:
        """Record a note about a city."""
        log.append(city)
        return "recorded"

    return record


class RejectCity:
    """A validator that rejects the first field it sees, whatever the model wrote."""

    async def start(self, call: Any) -> None:
        return None

    async def feed(self, event: Any) -> None:
        if isinstance(event, FieldDone) and event.path == ("city",):
            raise EarlyAbort(f"no records for {event.value!r}")

    async def finish(self, args: dict[str, Any]) -> str:
        return "recorded"

    async def cancel(self) -> None:
        return None


def test_forced_call_starts_its_tool_before_decoding_ends(vllm_engine: Any,
                                                          sched: Scheduler) -> None:
    log: list[str] = []
    weather = partial_tool(make_weather(log), start_on=["city"])
    model = ChatConveyor(backend=vllm_engine, temperature=0.0, max_tokens=64)
    msg = model.bind_tools([weather], tool_choice="get_weather").invoke(ASK)
    call = msg.tool_calls[0]
    timing = msg.response_metadata["conveyor"]["calls"][0]
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    assert timing["early"] and timing["tool_start"] < timing["decode_end"]
    out = weather.invoke({**call, "type": "tool_call"})
    assert out.content == f"{call['args']['city']}: sunny"
    assert log == [call["args"]["city"]]                      # exactly once
    assert sched.pending() == 0


def test_early_abort_decodes_fewer_tokens(vllm_engine: Any, sched: Scheduler) -> None:
    model = ChatConveyor(backend=vllm_engine, temperature=0.0, max_tokens=96, seed=0)
    full = model.bind_tools([make_record([])], tool_choice="record").invoke(
        "Write a long note about Paris.")
    checked = partial_tool(make_record([]), execution=RejectCity)
    cut = model.bind_tools([checked], tool_choice="record").invoke(
        "Write a long note about Paris.")
    assert cut.response_metadata["conveyor"]["abort"]["reason"].startswith("no records for")
    assert set(cut.tool_calls[0]["args"]) == {"city"}        # what was decoded before the stop
    assert cut.usage_metadata["output_tokens"] < full.usage_metadata["output_tokens"]
    deadline = time.monotonic() + 10
    while vllm_engine.stats["unfinished_requests"]:        # the aborted request was freed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    out = checked.invoke({**cut.tool_calls[0], "type": "tool_call"})
    assert out.status == "error" and out.content.startswith("no records for")


@pytest.fixture(scope="module")
def server_url(vllm_server: Any) -> str:
    return str(vllm_server.ensure())


def _server_model(vllm_server: Any, **kw: Any) -> ChatConveyor:
    from conveyor_integrations.backends import OpenAICompatible

    backend = OpenAICompatible(vllm_server.ensure(), model=vllm_server.model_name, max_retries=0,
                               timeout=60)
    return ChatConveyor(backend=backend, **{"temperature": 0.0, "max_tokens": 64, **kw})


def test_server_tool_parser_deltas(vllm_server: Any, sched: Scheduler) -> None:
    log: list[str] = []
    weather = partial_tool(make_weather(log), start_on=["city"])
    msg = _server_model(vllm_server, tool_format="openai").bind_tools(
        [weather], tool_choice="get_weather", strict=True).invoke(ASK)
    call = msg.tool_calls[0]
    timing = msg.response_metadata["conveyor"]["calls"][0]
    assert call["name"] == "get_weather" and timing["early"]
    assert timing["tool_start"] <= timing["decode_end"]
    assert weather.invoke({**call, "type": "tool_call"}).content.endswith(": sunny")
    assert len(log) == 1 and sched.pending() == 0


def test_server_raw_text_read_by_our_parser(vllm_server: Any, sched: Scheduler) -> None:
    log: list[str] = []
    weather = partial_tool(make_weather(log), start_on=["city"])
    text = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
            "I am checking the weather in Oslo for you, it will take a moment.")
    model = _server_model(vllm_server, tool_format="hermes",
                          structured_outputs={"choice": [text]})
    # the tool is bound for early starts only (no schemas sent): the server sees plain text
    msg = model.bind(conveyor_tools=BoundTools([weather])).invoke(ASK)
    assert msg.tool_calls[0]["args"] == {"city": "Oslo"}
    timing = msg.response_metadata["conveyor"]["calls"][0]
    assert timing["early"] and timing["tool_start"] < timing["decode_end"]
    assert weather.invoke({**msg.tool_calls[0], "type": "tool_call"}).content == "Oslo: sunny"
    assert log == ["Oslo"] and sched.pending() == 0


def test_server_killed_mid_stream_cancels_the_tool_work(vllm_server: Any,
                                                         sched: Scheduler) -> None:
    started, cancelled = threading.Event(), threading.Event()

    @tool
    async def slow_lookup(key: str, note: str = "") -> str:
        """Look a key up (slowly)."""
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return key

    slow = partial_tool(slow_lookup, start_on=["key"])
    text = ('<tool_call>\n{"name": "slow_lookup", "arguments": {"key": "a1", "note": "'
            + "a long note " * 40 + '"}}\n</tool_call>')
    model = _server_model(vllm_server, tool_format="hermes", max_tokens=400,
                          structured_outputs={"choice": [text]})
    killer = threading.Thread(target=lambda: started.wait(60) and vllm_server.kill())
    killer.start()
    with pytest.raises(BackendError):   # bound for early starts only: no schemas sent
        model.bind(conveyor_tools=BoundTools([slow])).invoke("look up a1")
    killer.join()
    assert started.is_set() and cancelled.wait(10), "the early execution was not cancelled"
    assert sched.pending() == 0
