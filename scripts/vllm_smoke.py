"""Smoke-test the in-process vLLM backend: start time, decode rate, a forced tool call, an abort.

Run: ``python scripts/vllm_smoke.py [MODEL_DIR]`` (MODEL_DIR defaults to the bundled SmolLM2).
"""

from __future__ import annotations

import asyncio
import sys
import time

from conveyor_integrations.backends.base import ChatRequest
from conveyor_integrations.backends.vllm_engine import VLLMEngine

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
    }
]


async def main(model: str | None) -> None:
    t0 = time.monotonic()
    async with VLLMEngine(model) as engine:
        print(f"engine start: {time.monotonic() - t0:.1f} s (build {engine.start_seconds:.1f} s)")
        req = ChatRequest(
            [{"role": "user", "content": "Write a short poem about the sea."}],
            sampling={"max_tokens": 128, "temperature": 0.0, "ignore_eos": True},
        )
        t, first, text, final = time.monotonic(), None, "", {}
        async for d in engine.stream(req):
            if isinstance(d, str):
                first = first or time.monotonic() - t
                text += d
            else:
                final = d
        dt = time.monotonic() - t
        n = final["usage"]["completion_tokens"]
        print(f"decode: {n} tokens, ttft {first:.2f} s, {(n - 1) / (dt - (first or 0)):.1f} tok/s")
        req = ChatRequest(
            [{"role": "user", "content": "What's the weather in Paris?"}],
            tools=TOOLS,
            tool_choice="required",
            sampling={"temperature": 0.0, "max_tokens": 64},
        )
        t = time.monotonic()
        out = [d async for d in engine.stream(req)]
        print(
            f"forced tool call ({time.monotonic() - t:.1f} s): "
            f"{''.join(x for x in out if isinstance(x, str))!r} {out[-1]}"
        )
        req = ChatRequest(
            [{"role": "user", "content": "Count from 1 to 500."}],
            sampling={"max_tokens": 400, "ignore_eos": True},
        )
        before = engine.stats["generation_tokens"]
        gen = engine.stream(req)
        async for i, _ in _aenumerate(gen):
            if i == 5:
                break
        await gen.aclose()
        await asyncio.sleep(0.5)
        print(
            f"abort after 6 deltas: decoded {engine.stats['generation_tokens'] - before} tokens, "
            f"stats {engine.stats}"
        )


async def _aenumerate(it):  # type: ignore[no-untyped-def]
    i = 0
    async for x in it:
        yield i, x
        i += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
