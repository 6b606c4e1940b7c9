"""ConveyorLLM's own entry points: chat, achat, stream_chat, astream_chat, the completion forms,
tool preparation, message conversion, and early starts under every one of them."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

import pytest

pytest.importorskip("llama_index.core")
from llama_index.core.llms import ChatMessage
from llama_index.core.tools import FunctionTool

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.llamaindex import ConveyorLLM
from conveyor_integrations.backends import Replay
from conveyor_integrations.scheduler import Scheduler

TEXT = "Hello! How can I help you today?"
CALL = ('<tool_call>{"name": "web_search", "arguments": {"query": "weather in Paris", '
        '"k": 3}}</tool_call>')
USER = [ChatMessage(role="user", content="hi")]


def make_search(log: list[str]) -> FunctionTool:
    def web_search(query: str, k: int = 3) -> str:
        """Search the web and return the top k results."""
        log.append(query)
        time.sleep(0.1)
        return f"top {k} results for {query}: sunny"

    return FunctionTool.from_defaults(fn=web_search)


async def _drive(llm: ConveyorLLM, entry: str, **kw: Any) -> tuple[Any, list[Any]]:
    """Call ``entry`` and return (final response, streamed chunks)."""
    if entry == "chat":
        return llm.chat(USER, **kw), []
    if entry == "achat":
        return await llm.achat(USER, **kw), []
    if entry == "stream_chat":
        chunks = list(llm.stream_chat(USER, **kw))
    else:
        chunks = [c async for c in await llm.astream_chat(USER, **kw)]
    return chunks[-1], chunks


ENTRIES = ["chat", "achat", "stream_chat", "astream_chat"]


@pytest.mark.parametrize("entry", ENTRIES)
async def test_text_under_every_chat_entry_point(entry: str, sched: Scheduler) -> None:
    llm = ConveyorLLM(backend=Replay(TEXT, tokens_per_s=None), temperature=0.2, max_tokens=64,
                      top_k=5)
    response, chunks = await _drive(llm, entry)
    assert response.message.content == TEXT and response.message.role == "assistant"
    assert llm.get_tool_calls_from_response(response, error_on_no_tool_call=False) == []
    assert response.additional_kwargs["completion_tokens"] > 0
    assert response.additional_kwargs["conveyor"]["calls"] == []
    if chunks:
        assert "".join(c.delta for c in chunks) == TEXT
        assert [c.message.content for c in chunks[:-1]] == [
            "".join(c.delta for c in chunks[:i + 1]) for i in range(len(chunks) - 1)]
    assert llm.backend.requests[0].sampling == {"temperature": 0.2, "max_tokens": 64, "top_k": 5}
    with pytest.raises(ValueError, match="at least one tool call"):
        llm.get_tool_calls_from_response(response)
    assert sched.pending() == 0


async def test_completion_forms(sched: Scheduler) -> None:
    llm = ConveyorLLM(backend=Replay(TEXT, tokens_per_s=None, cycle=True))
    assert llm.complete("hi").text == TEXT
    assert (await llm.acomplete("hi")).text == TEXT
    assert "".join(c.delta or "" for c in llm.stream_complete("hi")) == TEXT
    gen = await llm.astream_complete("hi")
    assert [c.text async for c in gen][-1] == TEXT
    assert llm.backend.requests[0].messages == [{"role": "user", "content": "hi"}]
    assert sched.pending() == 0


@pytest.mark.parametrize("entry", ENTRIES)
async def test_tools_start_early_under_every_entry_point(entry: str, sched: Scheduler) -> None:
    log: list[str] = []
    search = partial_tool(make_search(log), start_on=["query"])
    llm = ConveyorLLM(backend=Replay(CALL, tokens_per_s=200))
    kwargs = llm._prepare_chat_with_tools([search])
    kwargs.pop("messages")
    response, chunks = await _drive(llm, entry, **kwargs)

    (sel,) = llm.get_tool_calls_from_response(response)
    assert sel.tool_name == "web_search" and sel.tool_kwargs == {"query": "weather in Paris",
                                                                 "k": 3}
    timing = response.additional_kwargs["conveyor"]["calls"][0]
    assert timing["call_id"] == sel.tool_id and timing["early"] is True
    assert timing["tool_start"] < timing["args_final"] <= timing["decode_end"]
    assert response.raw["conveyor"] == response.additional_kwargs["conveyor"]
    calls = response.message.additional_kwargs["tool_calls"]
    assert calls == [{"id": sel.tool_id, "type": "function", "function": {
        "name": "web_search", "arguments": json.dumps(sel.tool_kwargs)}}]
    out = (search.call(**sel.tool_kwargs) if entry in ("chat", "stream_chat")
           else await search.acall(**sel.tool_kwargs))
    assert out.content == "top 3 results for weather in Paris: sunny" and not out.is_error
    assert log == ["weather in Paris"]
    if chunks:   # a streamed chunk shows the call once it is complete
        assert any(c.message.additional_kwargs.get("tool_calls") for c in chunks[:-1])
    assert sched.pending() == 0


def test_prepare_chat_with_tools_and_tool_choice(sched: Scheduler) -> None:
    search = make_search([])
    llm = ConveyorLLM(backend=Replay(TEXT, tokens_per_s=None, cycle=True))
    kw = llm._prepare_chat_with_tools([search], user_msg="find", chat_history=[
        ChatMessage(role="system", content="be brief")], tool_required=True)
    assert [m.content for m in kw["messages"]] == ["be brief", "find"]
    assert kw["tools"] == [search.metadata.to_openai_tool()]
    assert kw["tool_choice"] == "required"
    assert llm._prepare_chat_with_tools([search])["tool_choice"] is None       # backend default
    named = llm._prepare_chat_with_tools([search], tool_choice="web_search")["tool_choice"]
    assert named == {"type": "function", "function": {"name": "web_search"}}
    assert llm._prepare_chat_with_tools([])["tools"] is None
    llm.chat_with_tools([search], user_msg="find", tool_required=True)
    request = llm.backend.requests[-1]
    assert request.tool_choice == "required" and request.tools[0]["function"]["name"] == (
        "web_search")
    assert "tools" not in request.sampling and "tool_choice" not in request.sampling
    assert sched.pending() == 0


def test_metadata() -> None:
    meta = ConveyorLLM(backend=Replay(TEXT), context_window=8192, max_tokens=512,
                       model="smollm2").metadata
    assert meta.is_function_calling_model and meta.is_chat_model
    assert (meta.context_window, meta.num_output, meta.model_name) == (8192, 512, "smollm2")

    class Engine(Replay):
        engine_args: ClassVar[dict[str, int]] = {"max_model_len": 4096}

    assert ConveyorLLM(backend=Engine(TEXT)).metadata.context_window == 4096
    assert ConveyorLLM.class_name() == "ConveyorLLM"


def test_history_with_tool_calls_reaches_the_backend(sched: Scheduler) -> None:
    replay = Replay([CALL, "It is sunny."], tokens_per_s=None)
    llm = ConveyorLLM(backend=replay)
    search = make_search([])
    first = llm.chat_with_tools([search], user_msg="weather?")
    (sel,) = llm.get_tool_calls_from_response(first)
    history = [ChatMessage(role="user", content="weather?"), first.message,
               ChatMessage(role="tool", content="sunny",
                           additional_kwargs={"tool_call_id": sel.tool_id})]
    assert llm.chat(history).message.content == "It is sunny."
    assert replay.requests[1].messages == [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": sel.tool_id, "type": "function",
             "function": {"name": "web_search", "arguments": json.dumps(sel.tool_kwargs)}}]},
        {"role": "tool", "content": "sunny", "tool_call_id": sel.tool_id}]
    assert sched.pending() == 0


def test_without_parallel_calls_only_the_first_is_kept(sched: Scheduler) -> None:
    log: list[str] = []
    search = partial_tool(make_search(log), start_on=["query"])
    text = "".join(f'<tool_call>{{"name": "web_search", "arguments": {{"query": "q{i}"}}}}'
                   '</tool_call>\n' for i in range(3))
    llm = ConveyorLLM(backend=Replay(text, tokens_per_s=300))
    response = llm.chat_with_tools([search], user_msg="go", allow_parallel_tool_calls=False)
    (sel,) = llm.get_tool_calls_from_response(response)
    assert sel.tool_kwargs == {"query": "q0"}
    assert len(response.message.additional_kwargs["tool_calls"]) == 1
    assert search.call(**sel.tool_kwargs).content == "top 3 results for q0: sunny"
    assert sched.pending() == 0         # the dropped calls' early work was released


def test_breaking_off_a_stream_cancels_the_request(sched: Scheduler) -> None:
    log: list[str] = []
    search = partial_tool(make_search(log), start_on=["query"])
    replay = Replay(CALL + " and a long tail of text " * 20, tokens_per_s=400)
    llm = ConveyorLLM(backend=replay)
    kwargs = llm._prepare_chat_with_tools([search])
    for chunk in llm.stream_chat(kwargs.pop("messages"), **kwargs):
        if chunk.message.additional_kwargs.get("tool_calls"):
            break
    time.sleep(0.3)
    assert sched.pending() == 0                      # the early execution was dropped
    assert replay.emitted[0] < len(replay.tokens(CALL + " and a long tail of text " * 20))
