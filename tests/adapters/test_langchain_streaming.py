"""ChatConveyor streams chunks with tool_call_chunks; cancelling a stream cancels the work."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

pytest.importorskip("langchain_core")
from langchain_core.messages import AIMessageChunk
from langchain_core.tools import tool

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import Replay
from conveyor_integrations.scheduler import Scheduler

CALL = ('Checking.<tool_call>{"name": "lookup", "arguments": {"key": "a", "note": "'
        + "n" * 200 + '"}}</tool_call>')


def make_lookup(started: threading.Event, cancelled: threading.Event) -> Any:
    @tool
    async def lookup(key: str, note: str = "") -> str:
        """Look a key up."""
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return key

    return lookup


def test_stream_matches_invoke(sched: Scheduler) -> None:
    chunks = list(ChatConveyor(backend=Replay(CALL, tokens_per_s=None)).stream("go"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    full = ChatConveyor(backend=Replay(CALL, tokens_per_s=None)).invoke("go")
    assert total.content == full.content == "Checking."
    assert total.tool_calls[0]["args"] == full.tool_calls[0]["args"]
    assert total.tool_calls[0]["name"] == "lookup"
    assert total.response_metadata["conveyor"]["calls"][0]["name"] == "lookup"
    assert total.usage_metadata["output_tokens"] == full.usage_metadata["output_tokens"]


def test_breaking_out_of_a_sync_stream_cancels_the_execution(sched: Scheduler) -> None:
    started, cancelled = threading.Event(), threading.Event()
    lookup = partial_tool(make_lookup(started, cancelled), start_on=["key"])
    text = CALL + " and then a long explanation follows" * 10
    replay = Replay(text, tokens_per_s=100)
    model = ChatConveyor(backend=replay).bind_tools([lookup])
    for _ in model.stream("go"):
        if started.is_set():
            break
    assert cancelled.wait(5), "the early execution was not cancelled"
    assert replay.emitted[0] < len(Replay(text).tokens(text))   # decoding stopped too
    deadline = time.monotonic() + 5
    while sched.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sched.pending() == 0


async def test_cancelling_ainvoke_cancels_the_execution(sched: Scheduler) -> None:
    started, cancelled = threading.Event(), threading.Event()
    lookup = partial_tool(make_lookup(started, cancelled), start_on=["key"])
    model = ChatConveyor(backend=Replay(CALL, tokens_per_s=100)).bind_tools([lookup])
    task = asyncio.create_task(model.ainvoke("go"))
    while not started.is_set():
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(cancelled.wait, 5)
    assert sched.pending() == 0


def test_backend_failure_is_a_clear_error_and_cancels(sched: Scheduler) -> None:
    from conveyor_integrations.backends import BackendError

    started, cancelled = threading.Event(), threading.Event()
    lookup = partial_tool(make_lookup(started, cancelled), start_on=["key"])

    class Dying(Replay):
        async def stream(self, request: Any) -> Any:
            n = 0
            async for d in super().stream(request):
                yield d
                n += 1
                if n == 40:
                    raise BackendError("engine died mid-stream")

    model = ChatConveyor(backend=Dying(CALL, tokens_per_s=500)).bind_tools([lookup])
    with pytest.raises(BackendError, match="engine died"):
        model.invoke("go")
    assert cancelled.wait(5)
    assert sched.pending() == 0
