"""``OpenAICompatible(tool_parsing="client")``: the tools go to the server with
``tool_choice="none"`` (shown by the template, parsed by nobody there) and the model's raw text
is parsed here, in the format of the model's family; a decorated tool starts before the
message ends."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("openai")
pytest.importorskip("langchain_core")

from fake_openai_server import FakeOpenAIServer

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import OpenAICompatible
from conveyor_integrations.backends.base import BackendError, ChatRequest
from conveyor_integrations.parsing.detect import UnknownToolFormat
from conveyor_integrations.scheduler import Scheduler

TEXT = ('Checking.\n<tool_call>{"name": "search", "arguments": {"query": "Oslo weather", '
        '"note": "a long note the model writes after the query is final"}}</tool_call>')


def _pieces(text: str, n: int = 5) -> list[dict[str, Any]]:
    return [{"content": text[i:i + n]} for i in range(0, len(text), n)] + [
        {"content": "", "finish_reason": "stop"}]


def test_the_format_comes_from_the_model_name_or_is_a_clear_error() -> None:
    assert OpenAICompatible("http://x/v1", "Qwen/Qwen2.5-7B-Instruct",
                            tool_parsing="client").default_tool_format == "hermes"
    assert OpenAICompatible("http://x/v1", "m", tool_parsing="client",
                            tool_format="mistral").default_tool_format == "mistral"
    assert OpenAICompatible("http://x/v1", "m").default_tool_format == "openai"
    with pytest.raises(UnknownToolFormat, match="Pass tool_format=one of"):
        OpenAICompatible("http://x/v1", "my-model", tool_parsing="client")
    with pytest.raises(ValueError, match="needs tool_parsing='client'"):
        OpenAICompatible("http://x/v1", "m", tool_format="hermes")
    with pytest.raises(ValueError, match="cannot read raw model text"):
        OpenAICompatible("http://x/v1", "m", tool_parsing="client", tool_format="openai")
    with pytest.raises(ValueError, match="'server' or 'client'"):
        OpenAICompatible("http://x/v1", "m", tool_parsing="both")


def test_raw_text_is_parsed_here_and_the_tool_starts_early(sched: Scheduler) -> None:
    @partial_tool(start_on=["query"])
    def search(query: str, note: str = "") -> str:
        """Search."""
        return f"sunny in {query}"

    with FakeOpenAIServer([_pieces(TEXT)], delay_s=0.02) as server:
        backend = OpenAICompatible(server.base_url, "qwen2.5-7b-instruct", max_retries=0,
                                   tool_parsing="client")
        model = ChatConveyor(backend=backend).bind_tools([search])
        msg = model.invoke("weather in Oslo?")
    (request,) = server.requests
    assert request["tool_choice"] == "none" and request["tools"][0]["function"]["name"] == "search"
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [
        ("search", {"query": "Oslo weather",
                    "note": "a long note the model writes after the query is final"})]
    assert msg.content == "Checking.\n"
    assert msg.response_metadata["conveyor"]["tool_format"] == "hermes"
    (timing,) = msg.response_metadata["conveyor"]["calls"]
    assert timing["early"] is True           # its body began before decoding ended
    assert sched.claim(msg.tool_calls[0]["id"], spec=search.conveyor_spec) == (
        True, "sunny in Oslo weather")


async def test_a_forced_call_needs_the_servers_parser() -> None:
    backend = OpenAICompatible("http://127.0.0.1:9/v1", "qwen2.5", tool_parsing="client",
                               max_retries=0)
    tool = {"type": "function", "function": {"name": "search", "parameters": {}}}
    for choice in ("required", {"type": "function", "function": {"name": "search"}}):
        request = ChatRequest([{"role": "user", "content": "x"}], tools=[tool],
                              tool_choice=choice)
        with pytest.raises(BackendError, match="use tool_parsing='server'"):
            async for _ in backend.stream(request):
                pass
    await backend.aclose()
