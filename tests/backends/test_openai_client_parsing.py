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
    assert OpenAICompatible("http://x/v1", "m", tool_format="hermes").text_tool_format == "hermes"
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


@pytest.mark.parametrize("model,expected", [
    ("Qwen/Qwen2.5-7B-Instruct", "hermes"), ("mistral-small", "mistral"),
    ("meta-llama/Llama-3.1-8B-Instruct", None),   # no marker: a JSON answer is not a call
    ("meta-llama/Llama-4-Scout", None), ("my-own-model", None)])
def test_server_parsing_reads_calls_left_in_the_text_in_marked_formats(
        model: str, expected: str | None) -> None:
    backend = OpenAICompatible("http://x/v1", model)
    assert backend.default_tool_format == "openai" and backend.text_tool_format == expected


def test_calls_a_server_leaves_in_the_text_are_read_and_start_early(sched: Scheduler) -> None:
    ran: list[str] = []

    @partial_tool(start_on=["query"])
    def search(query: str, note: str = "") -> str:
        """Search."""
        ran.append(query)
        return f"sunny in {query}"

    text = ('Checking.\n<tool_call>{"name": "search", "arguments": {"query": "Oslo weather"}}'
            "</tool_call>\nThe search is running; I will read its results when they are in.")
    with FakeOpenAIServer([_pieces(text)], delay_s=0.02) as server:   # no tool_calls deltas
        backend = OpenAICompatible(server.base_url, "qwen2.5-7b-instruct", max_retries=0)
        msg = ChatConveyor(backend=backend).bind_tools([search]).invoke("weather in Oslo?")
    (request,) = server.requests
    assert request.get("tool_choice", "auto") == "auto" and request["tools"]  # server parses
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("search", {"query": "Oslo weather"})]
    assert msg.content.startswith("Checking.\n\nThe search is running")
    assert msg.response_metadata["conveyor"]["calls"][0]["early"] is True
    assert sched.claim(msg.tool_calls[0]["id"], spec=search.conveyor_spec) == (
        True, "sunny in Oslo weather")
    assert ran == ["Oslo weather"]


def test_a_json_answer_of_a_llama_model_stays_text() -> None:
    @partial_tool(start_on=["query"])
    def search(query: str) -> str:
        """Search."""
        raise AssertionError("never called")

    answer = '{"name": "search", "parameters": {"query": "x"}}'
    with FakeOpenAIServer([_pieces(answer)]) as server:
        backend = OpenAICompatible(server.base_url, "llama-3.1-8b-instruct", max_retries=0)
        msg = ChatConveyor(backend=backend).bind_tools([search]).invoke("json please")
    assert msg.tool_calls == [] and msg.content == answer
