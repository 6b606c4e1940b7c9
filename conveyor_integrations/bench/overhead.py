"""The library's own cost per decoded token: parse + dispatch, no tool work, no pacing.

Pre-split token deltas are fed straight into a parser and a scheduler session. The tools are
registered no-ops, so calls are routed to real executions whose work costs nothing, and what is
left is the library's cost. It is measured as CPU time of the whole process
(``time.process_time``: every thread, so the scheduler's loop is counted), best of ``repeat``,
for: a long code argument streamed by statements at several lengths (the cost must be flat in
the stream's length), the same through OpenAI-style deltas, and a message of many small calls.

``share_at_50_tok_s`` is the fraction of decode time that cost takes at 50 tokens/s (the
target is below 0.1 %, i.e. 20 µs per token; the core alone should stay within 5 µs). Example::

    >>> rows = measure_overhead(repeat=1, sizes=(200,))
    >>> sorted(rows[0])
    ['case', 'share_at_50_tok_s', 'tokens', 'us_per_token']
    >>> all(r["us_per_token"] > 0 for r in rows)
    True
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..backends.base import Delta
from ..backends.replay import split_tokens
from ..parsing import get_parser
from ..parsing.base import ToolCallParser
from ..partial import partial_tool
from ..policy import BoundTools
from ..scheduler import Scheduler

__all__ = ["DECODE_TOKENS_PER_S", "code_of", "measure_overhead", "overhead_case"]

DECODE_TOKENS_PER_S = 50.0
"""The decode speed the share of decode time is given at."""


def code_of(tokens: int) -> str:
    """Python source of about ``tokens`` tokens (4 characters each), many short statements."""
    lines: list[str] = []
    n = 0
    while n < tokens * 4:
        i = len(lines)
        line = f"value_{i} = compute(data[{i}], scale={i % 7}) + offset  # step {i}\n"
        if i % 5 == 0:
            line = f"for j in range({i}):\n    total += value_{i - 1} * j\n"
        lines.append(line)
        n += len(line)
    return "".join(lines)


def overhead_case(label: str, make_parser: Callable[[], ToolCallParser],
                  deltas: Sequence[Delta], sched: Scheduler, repeat: int = 5,
                  tools: BoundTools | None = None) -> dict[str, Any]:
    """Feed ``deltas`` through a fresh parser and session ``repeat`` times; the best run's row."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        parser = make_parser()
        session = sched.session(tools=tools or BoundTools())
        t0 = time.process_time()
        for d in deltas:
            events = parser.feed(d)
            if events:
                session.handle(events)
        session.handle(parser.close())
        for call_id in session.call_ids():        # every execution ran to its end and was taken
            sched.claim(call_id)
        best = min(best, time.process_time() - t0)
    us = 1e6 * best / max(1, len(deltas))
    return {"case": label, "tokens": len(deltas), "us_per_token": us,
            "share_at_50_tok_s": us * DECODE_TOKENS_PER_S / 1e6}


def measure_overhead(repeat: int = 5,
                     sizes: Sequence[int] = (1000, 3000, 10000)) -> list[dict[str, Any]]:
    """One row per case: ``case``, ``tokens``, ``us_per_token``, ``share_at_50_tok_s``.

    ``sizes`` are the lengths (in tokens, about) of the hermes code argument; the OpenAI-delta
    case uses the middle one and the many-small-calls case ``min(sizes) // 2`` calls.
    """
    if not sizes:
        raise ValueError("sizes must name at least one length")
    sched = Scheduler()
    try:
        async def run_python(code: str) -> None:   # no-op tools: only the library's cost is left
            return None

        async def search(query: str) -> None:
            return None

        tools = BoundTools([
            partial_tool(run_python, stream="code", unit="statement", combine=lambda _: None),
            partial_tool(search, start_on=["query"])])
        rng = random.Random(0)
        streams = tools.streams()

        def hermes() -> ToolCallParser:
            return get_parser("hermes", streams=streams)

        def openai() -> ToolCallParser:
            return get_parser("openai", streams=streams)

        rows = []
        for n in sizes:
            text = ('<tool_call>{"name": "run_python", "arguments": {"code": '
                    + json.dumps(code_of(n)) + "}}</tool_call>")
            # 1-8 characters per token (4.5 on average), as real tokenizers give on code
            label = f"hermes, code argument by statement ({_size(n)})"
            rows.append(overhead_case(label, hermes, split_tokens(text, rng), sched, repeat, tools))
        mid = sorted(sizes)[len(sizes) // 2]
        args = json.dumps({"code": code_of(mid)})
        deltas: list[Delta] = [{"tool_calls": [{"index": 0, "id": "call_1", "function":
                                                {"name": "run_python", "arguments": ""}}]}]
        deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]}
                   for p in split_tokens(args, rng)]
        rows.append(overhead_case(f"openai deltas, code argument by statement ({_size(mid)})",
                                  openai, deltas, sched, repeat, tools))
        calls = max(10, min(sizes) // 2)
        small = "".join(f'<tool_call>{{"name": "search", "arguments": {{"query": "item {i}"}}}}'
                        "</tool_call>\n" for i in range(calls))
        rows.append(overhead_case(f"hermes, {calls} small calls (start_on)", hermes,
                                  split_tokens(small, rng), sched, repeat, tools))
        return rows
    finally:
        sched.close()


def _size(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)
