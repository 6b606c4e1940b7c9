"""OpenAICompatible against a scripted SSE server: deltas, final dict, request shape, faults."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

openai = pytest.importorskip("openai")

from conveyor_integrations.backends.base import Backend, BackendError, ChatRequest
from conveyor_integrations.backends.openai_compatible import OpenAICompatible

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


def _request(**kw: Any) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": "hi"}], **kw)


async def _collect(backend: OpenAICompatible, request: ChatRequest) -> list[Any]:
    try:
        return [d async for d in backend.stream(request)]
    finally:
        await backend.aclose()


def test_is_a_backend() -> None:
    backend = OpenAICompatible("http://127.0.0.1:1/v1", model="m")
    assert isinstance(backend, Backend)
    assert backend.default_tool_format == "openai"


async def test_streams_content_and_tool_call_deltas(scripted_sse: Any) -> None:
    def script(c: Any, req: dict[str, Any]) -> None:
        c.head()
        c.chunk({"role": "assistant", "content": "Let me look."})
        c.chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "search", "arguments": ""},
                    }
                ]
            }
        )
        c.chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": "pa'}}]})
        c.chunk(
            {"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}, finish="tool_calls"
        )
        c.chunk(None, usage={"prompt_tokens": 7, "completion_tokens": 5})
        c.done()

    srv = scripted_sse(script)
    backend = OpenAICompatible(srv.base_url, model="m", max_retries=0)
    req = _request(
        tools=TOOLS,
        tool_choice="auto",
        sampling={"temperature": 0.0, "max_tokens": 9, "top_k": 3, "seed": 1},
    )
    out = await _collect(backend, req)
    assert out[0] == {"content": "Let me look."}
    assert out[1] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "search", "arguments": ""},
            }
        ]
    }
    args = "".join(d["tool_calls"][0]["function"]["arguments"] for d in out[1:4])
    assert args == '{"q": "paris"}'
    assert out[-1] == {
        "finish_reason": "tool_calls",
        "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
    }
    sent = srv.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto"
    assert (sent["model"], sent["temperature"], sent["max_tokens"], sent["seed"]) == (
        "m",
        0.0,
        9,
        1,
    )
    assert sent["top_k"] == 3  # not an OpenAI parameter: sent through extra_body


async def test_structured_outputs_go_in_the_body(scripted_sse: Any) -> None:
    def script(c: Any, req: dict[str, Any]) -> None:
        c.head()
        c.chunk({"content": "yes"}, finish="stop")
        c.done()

    srv = scripted_sse(script)
    backend = OpenAICompatible(srv.base_url, model="m", max_retries=0)
    out = await _collect(
        backend,
        _request(
            tool_choice="required",  # dropped: no tools
            sampling={"structured_outputs": {"choice": ["yes", "no"]}, "stream": False},
        ),
    )
    assert out == [{"content": "yes"}, {"finish_reason": "stop"}]
    assert srv.requests[0]["structured_outputs"] == {"choice": ["yes", "no"]}
    assert "tools" not in srv.requests[0] and "tool_choice" not in srv.requests[0]
    assert srv.requests[0]["stream"] is True


async def test_connection_refused_is_a_backend_error(unused_port: int) -> None:
    url = f"http://127.0.0.1:{unused_port}/v1"
    backend = OpenAICompatible(url, model="m", max_retries=0)
    with pytest.raises(BackendError, match="connection to .* failed") as info:
        await _collect(backend, _request())
    assert url in str(info.value)
    assert isinstance(info.value.__cause__, openai.APIConnectionError)


async def test_stream_cut_mid_way_is_a_backend_error(scripted_sse: Any) -> None:
    def script(c: Any, req: dict[str, Any]) -> None:
        c.head()
        c.chunk({"content": "partial"})
        time.sleep(0.05)
        c.cut()

    backend = OpenAICompatible(scripted_sse(script).base_url, model="m", max_retries=0)
    got: list[Any] = []
    with pytest.raises(BackendError, match="cut mid-way") as info:
        try:
            async for d in backend.stream(_request()):
                got.append(d)
        finally:
            await backend.aclose()
    assert got == [{"content": "partial"}]
    assert info.value.__cause__ is not None


async def test_stream_ending_without_finish_reason_is_a_backend_error(scripted_sse: Any) -> None:
    def script(c: Any, req: dict[str, Any]) -> None:
        c.head()
        c.chunk({"content": "partial"})
        c.done()

    backend = OpenAICompatible(scripted_sse(script).base_url, model="m", max_retries=0)
    with pytest.raises(BackendError, match="without a finish_reason"):
        await _collect(backend, _request())


async def test_http_status_error(scripted_sse: Any) -> None:
    def script(c: Any, req: dict[str, Any]) -> None:
        c.head("400 Bad Request", '{"error": {"message": "bad tool_choice", "type": "invalid"}}')

    backend = OpenAICompatible(scripted_sse(script).base_url, model="m", max_retries=0)
    with pytest.raises(BackendError, match="HTTP 400.*bad tool_choice") as info:
        await _collect(backend, _request())
    assert isinstance(info.value.__cause__, openai.APIStatusError)


async def test_timeout_is_a_backend_error(scripted_sse: Any) -> None:
    release = threading.Event()

    def script(c: Any, req: dict[str, Any]) -> None:
        release.wait(5)

    backend = OpenAICompatible(scripted_sse(script).base_url, model="m", max_retries=0, timeout=0.3)
    try:
        with pytest.raises(BackendError, match="timed out"):
            await _collect(backend, _request())
    finally:
        release.set()


async def test_closing_early_closes_the_http_stream(scripted_sse: Any) -> None:
    hung_up = threading.Event()

    def script(c: Any, req: dict[str, Any]) -> None:
        c.head()
        try:
            for i in range(200):
                c.chunk({"content": f"w{i} "})
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            hung_up.set()
            raise

    backend = OpenAICompatible(scripted_sse(script).base_url, model="m", max_retries=0)
    gen = backend.stream(_request())
    assert await gen.__anext__() == {"content": "w0 "}
    await gen.aclose()
    await backend.aclose()
    assert await asyncio.to_thread(hung_up.wait, 5), "the server kept streaming to a closed client"


def test_one_client_per_event_loop(scripted_sse: Any) -> None:
    def script(c: Any, req: dict[str, Any]) -> None:
        c.head()
        c.chunk({"content": "ok"}, finish="stop")
        c.done()

    backend = OpenAICompatible(scripted_sse(script).base_url, model="m", max_retries=0)

    async def once() -> list[Any]:
        return [d async for d in backend.stream(_request())]

    assert asyncio.run(once())[0] == {"content": "ok"}
    assert asyncio.run(once())[0] == {"content": "ok"}  # a fresh loop: no stale connections
    asyncio.run(backend.aclose())
