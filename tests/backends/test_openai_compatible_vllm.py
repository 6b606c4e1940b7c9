"""OpenAICompatible against a real vLLM OpenAI server (bundled SmolLM2, hermes tool parser).

One server per module (``vllm_server.ensure()`` restarts it after the kill test).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from conveyor_integrations.backends.base import BackendError, ChatRequest
from conveyor_integrations.backends.openai_compatible import OpenAICompatible

pytestmark = pytest.mark.vllm

# "strict": vLLM 0.32's server pins the arguments to the schema only for strict tools
# (vllm/tool_parsers/tool_strict_level.py); SmolLM2 writes nonsense arguments otherwise.
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def _backend(server: Any) -> OpenAICompatible:
    return OpenAICompatible(server.ensure(), model=server.model_name, max_retries=0, timeout=60)


async def _collect(backend: OpenAICompatible, request: ChatRequest) -> list[Any]:
    try:
        return [d async for d in backend.stream(request)]
    finally:
        await backend.aclose()


def _call_events(deltas: list[Any]) -> list[Any]:
    parsing = pytest.importorskip("conveyor_integrations.parsing")
    parser = parsing.get_parser("openai", tools=["get_weather"], id_prefix="t")
    events = [e for d in deltas for e in parser.feed(d)]
    return events + parser.close()


async def test_streams_text(vllm_server: Any) -> None:
    req = ChatRequest(
        [{"role": "user", "content": "What is the capital of France?"}],
        sampling={"max_tokens": 16, "temperature": 0.0},
    )
    out = await _collect(_backend(vllm_server), req)
    assert "Paris" in "".join(d.get("content", "") for d in out[:-1])
    assert out[-1]["finish_reason"] in ("stop", "length")
    assert out[-1]["usage"]["completion_tokens"] > 0


async def test_named_tool_choice_streams_tool_call_deltas(vllm_server: Any) -> None:
    req = ChatRequest(
        [{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        sampling={"max_tokens": 60, "temperature": 0.0},
    )
    out = await _collect(_backend(vllm_server), req)
    assert any("tool_calls" in d for d in out[:-1]), out
    done = [e for e in _call_events(out) if type(e).__name__ == "CallDone"]
    assert [e.name for e in done] == ["get_weather"]
    assert isinstance(done[0].args["city"], str)


async def test_hermes_parser_on_the_server_turns_text_into_tool_calls(vllm_server: Any) -> None:
    # auto tool choice: the server's hermes parser reads <tool_call> text; we force that text.
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    req = ChatRequest(
        [{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER],
        tool_choice="auto",
        sampling={"max_tokens": 60, "structured_outputs": {"choice": [text]}},
    )
    out = await _collect(_backend(vllm_server), req)
    assert out[-1]["finish_reason"] == "tool_calls"
    done = [e for e in _call_events(out) if type(e).__name__ == "CallDone"]
    assert [(e.name, e.args) for e in done] == [("get_weather", {"city": "Oslo"})]


async def test_closing_early_frees_the_request_on_the_server(vllm_server: Any) -> None:
    backend = _backend(vllm_server)
    req = ChatRequest(
        [{"role": "user", "content": "Count to 1000."}],
        sampling={"max_tokens": 400, "ignore_eos": True},
    )
    gen = backend.stream(req)
    n = 0
    async for _ in gen:
        n += 1
        if n == 5:
            break
    await gen.aclose()
    await backend.aclose()
    deadline = time.monotonic() + 10
    while vllm_server.metric("vllm:num_requests_running") > 0:
        assert time.monotonic() < deadline, "the server kept decoding a closed stream"
        await asyncio.sleep(0.2)
    tokens = vllm_server.metric("vllm:generation_tokens_total")
    await asyncio.sleep(0.5)
    assert vllm_server.metric("vllm:generation_tokens_total") == tokens


async def test_server_killed_mid_stream_is_a_backend_error(vllm_server: Any) -> None:
    backend = _backend(vllm_server)
    req = ChatRequest(
        [{"role": "user", "content": "Write a long story."}],
        sampling={"max_tokens": 400, "ignore_eos": True},
    )
    got: list[Any] = []
    with pytest.raises(BackendError, match="cut mid-way|connection"):
        try:
            async for d in backend.stream(req):
                got.append(d)
                if len(got) == 3:
                    await asyncio.to_thread(vllm_server.kill)
        finally:
            await backend.aclose()
    assert 3 <= len(got) < 400


async def test_client_side_parsing_reads_the_raw_text(vllm_server: Any) -> None:
    # tool_choice="none" on the wire: the server parses nothing; the forced text is parsed here
    # (the format from the served model's name, smollm2: hermes)
    text = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "note": '
            '"written after the city"}}\n</tool_call>')
    parsing = pytest.importorskip("conveyor_integrations.parsing")
    backend = OpenAICompatible(vllm_server.ensure(), model=vllm_server.model_name,
                               max_retries=0, timeout=60, tool_parsing="client")
    req = ChatRequest([{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER],
                      tool_choice="auto",
                      sampling={"max_tokens": 80, "structured_outputs": {"choice": [text]}})
    out = await _collect(backend, req)
    assert backend.default_tool_format == "hermes"
    assert not any("tool_calls" in d for d in out) and out[-1]["finish_reason"] == "stop"
    assert "".join(d.get("content") or "" for d in out[:-1]) == text
    parser = parsing.get_parser("hermes", tools=["get_weather"])
    timed = [(i, e) for i, d in enumerate(out[:-1]) for e in parser.feed(d)]
    timed += [(len(out) - 1, e) for e in parser.close()]
    done = [e for _, e in timed if type(e).__name__ == "CallDone"]
    assert [(e.name, e.args) for e in done] == [
        ("get_weather", {"city": "Oslo", "note": "written after the city"})]
    city = next(i for i, e in timed if type(e).__name__ == "FieldDone" and e.path == ("city",))
    assert city < next(i for i, e in timed if type(e).__name__ == "CallDone")
