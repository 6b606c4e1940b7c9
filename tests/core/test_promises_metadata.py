"""Promise 6 of the redesign: the per-call metadata tells the truth.

(a) a tool still running when decoding ends is "running" and its saving is unknown (None);
(b) a tool whose body ran only after decoding ended is not "early";
(c) ``ConveyorCallbackHandler`` puts the same metadata on the wrapped model's ``AIMessage``;
(d) a handler reused over many runs keeps bounded memory.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

pytest.importorskip("langchain")
pytest.importorskip("langchain_openai")

from langchain.agents import create_agent
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from conveyor_integrations import EarlyAbort, Scheduler, partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor, ConveyorCallbackHandler
from conveyor_integrations.backends import Replay
from tests.fake_openai_server import FakeOpenAIServer, tool_call_deltas

ANSWER = "Done."
CALL = ('Working on it.\n<tool_call>{"name": "search", "arguments": {"query": "paris"}}'
        "</tool_call>")


def first_ai(msgs: list[Any]) -> AIMessage:
    return next(m for m in msgs if isinstance(m, AIMessage))


# -- (a) still running at the end of decoding ------------------------------------------------

def test_tool_still_running_when_decoding_ends_is_running_with_unknown_saving(
        sched: Scheduler) -> None:
    log: list[str] = []

    @tool
    def search(query: str) -> str:
        """Search the web (slowly)."""
        log.append(query)
        time.sleep(1.0)
        return f"result for {query}"

    fast = partial_tool(search, start_on=["query"])
    msg = ChatConveyor(backend=Replay(CALL, tokens_per_s=2000)).bind_tools([fast]).invoke("go")
    call = msg.response_metadata["conveyor"]["calls"][0]

    assert call["tool_start"] is not None and call["tool_end"] is None   # it is still running
    assert call["status"] == "running"
    assert call["saved_s"] is None                                       # unknown yet, not 0.0
    # and its result is still handed over, once
    out = fast.invoke({"type": "tool_call", **msg.tool_calls[0]})
    assert out.content == "result for paris"
    assert log == ["paris"]
    assert sched.pending() == 0


# -- (b) ran only after decoding ended -----------------------------------------------------------

def run_agent(t: Any) -> list[Any]:
    model = ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=2000))
    return list(create_agent(model, tools=[t]).invoke(
        {"messages": [HumanMessage("search paris")]})["messages"])


def test_side_effects_tool_reports_not_early(sched: Scheduler) -> None:
    log: list[str] = []

    @partial_tool(side_effects=True)
    @tool
    def search(query: str) -> str:
        """Search the web, and write it down."""
        log.append(query)
        return f"result for {query}"

    msgs = run_agent(search)
    call = first_ai(msgs).response_metadata["conveyor"]["calls"][0]
    assert log == ["paris"]
    assert call["early"] is False
    assert call["saved_s"] in (None, 0.0)
    assert sched.pending() == 0


# -- (c) the handler's metadata on a model that is not ours --------------------------------------

def handler_turns() -> list[list[dict[str, Any]]]:
    first = tool_call_deltas("call_abc", "search", {"query": "paris"}, piece=3)
    first[-1]["finish_reason"] = "tool_calls"
    return [first, [{"role": "assistant", "content": ANSWER}, {"finish_reason": "stop"}]]


def test_callback_handler_puts_conveyor_metadata_on_the_message(sched: Scheduler) -> None:
    log: list[str] = []

    @tool
    def search(query: str) -> str:
        """Search the web."""
        log.append(query)
        return f"result for {query}"

    fast = partial_tool(search, start_on=["query"])
    handler = ConveyorCallbackHandler(tools=[fast])
    with FakeOpenAIServer(handler_turns(), delay_s=0.01) as server:
        llm = ChatOpenAI(base_url=server.base_url, api_key="x", model="fake", streaming=True,
                         callbacks=[handler])
        msgs = list(create_agent(llm, tools=[fast]).invoke(
            {"messages": [HumanMessage("search paris")]})["messages"])

    assert log == ["paris"]
    first = first_ai(msgs)
    calls = first.response_metadata["conveyor"]["calls"]
    assert [c["name"] for c in calls] == ["search"]
    assert calls[0]["early"] is True
    assert sched.pending() == 0


# -- (d) bounded memory over many runs -----------------------------------------------------------

class StreamsToolCalls(BaseChatModel):
    """A LangChain chat model that streams one tool call in ``tool_call_chunks``; ``fail``:
    raise in the middle of the stream."""

    fail: bool = False
    streaming: bool = False

    @property
    def _llm_type(self) -> str:
        return "streams-tool-calls"

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                ) -> Iterator[ChatGenerationChunk]:
        cid = f"call_{uuid.uuid4().hex[:8]}"
        pieces = [tool_call_chunk(name="lookup", args="", id=cid, index=0),
                  tool_call_chunk(name=None, args='{"key": ', id=None, index=0),
                  tool_call_chunk(name=None, args='"a"}', id=None, index=0)]
        for i, piece in enumerate(pieces):
            if self.fail and i == 2:
                raise RuntimeError("the model broke")
            chunk = ChatGenerationChunk(message=AIMessageChunk(content="",
                                                               tool_call_chunks=[piece]))
            if run_manager:
                run_manager.on_llm_new_token("", chunk=chunk)
            yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages, stop, None, **kwargs):
            if run_manager:
                await run_manager.on_llm_new_token("", chunk=chunk)
            await asyncio.sleep(0)
            yield chunk

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                  ) -> ChatResult:
        raise NotImplementedError("streams only")


def test_reused_handler_keeps_bounded_memory(sched: Scheduler) -> None:
    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return key

    handler = ConveyorCallbackHandler(tools=[partial_tool(lookup, side_effects=True)])
    ok = StreamsToolCalls(streaming=True, callbacks=[handler])
    broken = StreamsToolCalls(streaming=True, fail=True, callbacks=[handler])
    for i in range(1000):
        kind = i % 4
        if kind == 0:
            list(ok.stream("go"))                      # a whole stream
        elif kind == 1:
            ok.invoke("go")                            # invoke (streams under the hood)
        elif kind == 2:
            with pytest.raises(RuntimeError):
                list(broken.stream("go"))              # the model fails mid-stream
        else:
            stream = ok.stream("go")
            next(stream)                               # the caller stops reading
            stream.close()

    assert len(handler.sessions) <= 256
    assert len(handler._runs) == 0                     # internal run table: no run left open


async def test_reused_handler_keeps_bounded_memory_async(sched: Scheduler) -> None:
    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return key

    handler = ConveyorCallbackHandler(tools=[partial_tool(lookup, side_effects=True)])
    ok = StreamsToolCalls(streaming=True, callbacks=[handler])
    broken = StreamsToolCalls(streaming=True, fail=True, callbacks=[handler])

    async def read_all(model: Any) -> None:
        async for _ in model.astream("go"):
            pass

    for i in range(1000):
        kind = i % 4
        if kind == 0:
            await read_all(ok)
        elif kind == 1:
            await ok.ainvoke("go")
        elif kind == 2:
            with pytest.raises(RuntimeError):
                await read_all(broken)
        else:
            task = asyncio.ensure_future(read_all(ok))
            await asyncio.sleep(0)
            task.cancel()                              # the caller's task is cancelled
            await asyncio.gather(task, return_exceptions=True)

    assert len(handler.sessions) <= 256
    assert len(handler._runs) == 0                     # internal run table: no run left open


class AbortAtOnce:
    """An execution that stops every call at its start."""

    async def start(self, call: Any) -> None:
        raise EarlyAbort("not allowed")

    async def feed(self, event: Any) -> None:
        return None

    async def finish(self, args: dict[str, Any]) -> Any:
        return None

    async def cancel(self) -> None:
        return None


def test_reused_handler_keeps_bounded_abort_memory(sched: Scheduler) -> None:
    """Beyond the brief's two bounds: ``handler.aborts`` (one entry per aborted call) must be
    bounded too, or a long-lived handler grows with every aborted run."""

    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return key

    handler = ConveyorCallbackHandler(tools=[partial_tool(lookup, execution=AbortAtOnce)])
    ok = StreamsToolCalls(streaming=True, callbacks=[handler])
    for _ in range(1000):
        list(ok.stream("go"))

    assert len(handler.sessions) <= 256
    assert len(handler._runs) == 0
    assert 0 < len(handler.aborts) <= 256
