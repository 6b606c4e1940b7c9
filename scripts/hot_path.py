"""Measure the library's own cost per decoded token: parse + dispatch, no tool work, no pacing.

Feeds pre-split token deltas straight into a parser and a scheduler session (the decorated tools
are registered, so calls are routed to executions whose tools do nothing) and reports
CPU microseconds per token (this process, all threads, so the scheduler's loop is counted) for: a long code argument streamed by statements (1k, 3k and 10k tokens,
to show the cost is flat in the stream's length), the same through OpenAI-style deltas, and a
message of many small calls. Run:  .venv/bin/python scripts/hot_path.py
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable

from conveyor_integrations import Scheduler, partial_tool
from conveyor_integrations.backends.replay import split_text
from conveyor_integrations.parsing import get_parser


def code_of(tokens: int) -> str:
    lines, n = [], 0
    while n < tokens * 4:
        i = len(lines)
        line = f"value_{i} = compute(data[{i}], scale={i % 7}) + offset  # step {i}\n"
        if i % 5 == 0:
            line = f"for j in range({i}):\n    total += value_{i - 1} * j\n"
        lines.append(line)
        n += len(line)
    return "".join(lines)


def measure(label: str, make_parser: Callable[[], object], deltas: list[object],
            sched: Scheduler, repeat: int = 5) -> None:
    best = float("inf")
    for _ in range(repeat):
        parser = make_parser()
        session = sched.session()
        t0 = time.process_time()
        for d in deltas:
            events = parser.feed(d)  # type: ignore[attr-defined]
            if events:
                session.handle(events)
        session.handle(parser.close())  # type: ignore[attr-defined]
        sched.submit(asyncio.sleep(0)).result()   # the loop has taken every batch
        best = min(best, time.process_time() - t0)
        session.cancel()
    print(f"{label:<44} {len(deltas):>6} tokens  {1e6 * best / len(deltas):6.2f} µs/token")


def main() -> None:
    sched = Scheduler()

    async def run_python(code: str) -> None:     # no-op tools: only the library's cost is left
        return None

    async def search(query: str) -> None:
        return None

    partial_tool(run_python, stream="code", unit="statement", scheduler=sched)
    partial_tool(search, start_on=["query"], scheduler=sched)
    rng = random.Random(0)
    streams = sched.parser_streams()
    for n in (1000, 3000, 10000):
        code = code_of(n)
        text = ('<tool_call>{"name": "run_python", "arguments": {"code": '
                + json.dumps(code) + "}}</tool_call>")
        toks: list[object] = list(split_text(text, rng))
        # ~4 characters per token, as real tokenizers give on code
        toks = ["".join(map(str, toks[i:i + 1])) for i in range(len(toks))]
        measure(f"hermes, code argument by statement ({n // 1000}k)",
                lambda: get_parser("hermes", streams=streams), toks, sched)
    args = json.dumps({"code": code_of(3000)})
    deltas: list[object] = [{"tool_calls": [{"index": 0, "id": "call_1", "function":
                                             {"name": "run_python", "arguments": ""}}]}]
    deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]}
               for p in split_text(args, rng)]
    measure("openai deltas, code argument by statement", lambda: get_parser("openai",
            streams=streams), deltas, sched)
    small = "".join(f'<tool_call>{{"name": "search", "arguments": {{"query": "item {i}"}}}}'
                    "</tool_call>\n" for i in range(500))
    measure("hermes, 500 small calls (start_on)", lambda: get_parser("hermes", streams=streams),
            list(split_text(small, rng)), sched)
    sched.close()


if __name__ == "__main__":
    main()
