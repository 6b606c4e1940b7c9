"""The in-process vLLM backend on the bundled SmolLM2-135M-Instruct (CPU), one engine per session.

Each test runs on its own event loop: the engine lives on its own loop thread, so that is fine.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from conveyor_integrations.backends.base import Backend, BackendError, ChatRequest

pytestmark = pytest.mark.vllm

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_python",
            "description": "Run Python code",
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string"}},
                "required": ["code"],
            },
        },
    },
]
LONG = {"max_tokens": 300, "ignore_eos": True, "temperature": 0.0}


def _user(text: str, **kw: Any) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], **kw)


async def _settle(engine: Any, wait: float = 0.4) -> dict[str, int]:
    """Stats once the engine has nothing left to do (tokens stop moving)."""
    deadline = time.monotonic() + 10
    last = engine.stats
    while time.monotonic() < deadline:
        await asyncio.sleep(wait)
        now = engine.stats
        if now == last and now["unfinished_requests"] == 0:
            return now
        last = now
    raise AssertionError(f"the engine kept working: {last}")


async def test_streams_text_then_a_final_dict(vllm_engine: Any) -> None:
    assert isinstance(vllm_engine, Backend) and vllm_engine.default_tool_format == "hermes"
    # auto: the bundled model's template has no tool section, so the tools go in a system
    # message that asks for <tool_call> JSON
    assert await vllm_engine.detect_tool_format() == "hermes"
    req = _user("What is the capital of France?", sampling={"max_tokens": 24, "temperature": 0.0})
    out = [d async for d in vllm_engine.stream(req)]
    *texts, final = out
    assert texts and all(isinstance(t, str) for t in texts)
    assert "Paris" in "".join(texts)
    assert final["finish_reason"] in ("stop", "length")
    assert final["usage"]["prompt_tokens"] > 10
    assert 0 < final["usage"]["completion_tokens"] <= 24


async def test_same_seed_same_text_and_prefix_cache(vllm_engine: Any) -> None:
    sampling = {"max_tokens": 12, "temperature": 1.0, "seed": 7}
    system = {"role": "system", "content": "You answer briefly. " * 100}  # > 3 KV blocks of 128

    def req(question: str) -> ChatRequest:
        return ChatRequest([system, {"role": "user", "content": question}], sampling=sampling)

    first = [d async for d in vllm_engine.stream(req("Tell me a fact about owls."))]
    second = [d async for d in vllm_engine.stream(req("Tell me a fact about owls."))]
    assert first[:-1] == second[:-1]
    third = [d async for d in vllm_engine.stream(req("And one about cats?"))]
    assert third[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] >= 256


async def test_forced_tool_call_is_read_by_the_hermes_parser(vllm_engine: Any) -> None:
    parsing = pytest.importorskip("conveyor_integrations.parsing")
    req = _user(
        "What's the weather like in Paris today?",
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        sampling={"max_tokens": 64, "temperature": 0.0},
    )
    parser = parsing.get_parser("hermes", tools=["get_weather", "run_python"], id_prefix="t")
    events: list[Any] = []
    text = ""
    async for d in vllm_engine.stream(req):
        if isinstance(d, str):
            text += d
        events += parser.feed(d)
    events += parser.close()
    assert text.startswith('<tool_call>\n{"name": "get_weather", "arguments": {')
    assert text.endswith("}\n</tool_call>")
    done = [e for e in events if type(e).__name__ == "CallDone"]
    assert len(done) == 1 and done[0].name == "get_weather"
    assert isinstance(done[0].args["city"], str)
    assert not [e for e in events if type(e).__name__ == "CallMalformed"]


async def test_required_tool_choice_picks_one_of_the_tools(vllm_engine: Any) -> None:
    req = _user(
        "Print hello world with Python.",
        tools=TOOLS,
        tool_choice="required",
        sampling={"max_tokens": 80, "temperature": 0.0},
    )
    text = "".join([d async for d in vllm_engine.stream(req) if isinstance(d, str)])
    assert text.startswith('<tool_call>\n{"name": "'), text
    assert text.endswith("}\n</tool_call>"), text


async def test_structured_outputs_passthrough_forces_exact_text(vllm_engine: Any) -> None:
    call = '{"name": "run_python", "arguments": {"code": "print(1)"}}'
    transcript = f"Sure.\n<tool_call>\n{call}\n</tool_call>"
    req = _user(
        "Anything.", sampling={"structured_outputs": {"choice": [transcript]}, "max_tokens": 200}
    )
    out = [d async for d in vllm_engine.stream(req)]
    assert "".join(d for d in out if isinstance(d, str)) == transcript
    assert out[-1]["finish_reason"] == "stop"


async def test_closing_the_stream_aborts_decoding(vllm_engine: Any) -> None:
    before = (await _settle(vllm_engine))["generation_tokens"]
    gen = vllm_engine.stream(_user("Count from 1 to 1000.", sampling=LONG))
    n = 0
    async for _ in gen:
        n += 1
        if n == 5:
            break
    await gen.aclose()
    after = await _settle(vllm_engine)
    decoded = after["generation_tokens"] - before
    assert decoded < 100, f"{decoded} tokens decoded for 5 deltas of a 300-token request"
    assert after["unfinished_requests"] == 0 and after["running_requests"] == 0


async def test_cancelled_consumer_leaves_no_request_running(vllm_engine: Any) -> None:
    before = (await _settle(vllm_engine))["generation_tokens"]
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in vllm_engine.stream(_user("Write a long story.", sampling=LONG)):
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = await _settle(vllm_engine)
    assert after["generation_tokens"] - before < 100
    assert after["unfinished_requests"] == 0 and after["running_requests"] == 0


async def test_tool_history_and_bad_requests(vllm_engine: Any) -> None:
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 C"},
    ]
    req = ChatRequest(history, tools=TOOLS, sampling={"max_tokens": 8, "temperature": 0.0})
    out = [d async for d in vllm_engine.stream(req)]
    assert out[-1]["usage"]["completion_tokens"] > 0
    with pytest.raises(BackendError, match="not among the tools"):
        bad = _user(
            "x", tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}
        )
        [d async for d in vllm_engine.stream(bad)]
    with pytest.raises(BackendError):
        [d async for d in vllm_engine.stream(_user("x", sampling={"no_such_param": 1}))]
