"""Overlap on the core API alone: a tool as slow as decoding, with and without partial execution.

A replayed model (50 tokens/s, standing for a GPU's decode speed) writes one call of
``summarize_lines`` whose ``text`` argument has 12 lines; the tool spends the same time on each
line, in all as long as decoding the whole message takes. Sequential execution ends at
``decode + tool``; with ``@partial_tool(stream="text", unit="line", combine="".join)`` each line
is processed as soon as it is decoded, so the run ends at about ``max(decode, tool)`` plus one line's work.
Run:  python examples/core_overlap.py
"""

from __future__ import annotations

import asyncio
import json
import time

from conveyor_integrations import Scheduler, partial_tool
from conveyor_integrations.backends import ChatRequest, Replay
from conveyor_integrations.parsing import get_parser
from conveyor_integrations.policy import BoundTools
from conveyor_integrations.turn import run_turn

LINES = "".join(f"order {1000 + i}: 3 items, shipped from warehouse {i % 4}, paid by card\n"
                for i in range(12))
TEXT = ('<tool_call>{"name": "summarize_lines", "arguments": {"text": '
        + json.dumps(LINES) + "}}</tool_call>")
RATE = 50.0


async def main() -> None:
    decode_s = len(Replay(TEXT, RATE, seed=0).tokens(TEXT)) / RATE
    per_line = decode_s / LINES.count("\n")
    sched = Scheduler()

    def summarize_lines(text: str) -> str:
        out = []
        for line in text.splitlines(keepends=True):
            time.sleep(per_line)                     # the tool's work on one line
            out.append(line.split(":")[0] + ": ok\n")
        return "".join(out)

    # sequential: decode everything, then run the tool
    t0 = time.perf_counter()
    turn = await run_turn(Replay(TEXT, RATE, seed=0), ChatRequest([]),
                          parser=get_parser("hermes"), session=sched.session())
    expected = summarize_lines(**turn.calls[0].args)
    sequential = time.perf_counter() - t0

    # partial: each complete line runs as soon as it is decoded (the per-line results joined
    # are the tool's result); only the tools bound to the request start; claimed by id
    tool = partial_tool(summarize_lines, stream="text", unit="line", combine="".join,
                        scheduler=sched)
    t0 = time.perf_counter()
    parser = get_parser("hermes", streams=BoundTools([tool]).streams())
    turn = await run_turn(Replay(TEXT, RATE, seed=0), ChatRequest([]), parser=parser,
                          session=sched.session(tools=[tool]))
    found, result = await sched.aclaim(turn.calls[0].id, args=turn.calls[0].args,
                                       spec=tool.conveyor_spec)
    partial = time.perf_counter() - t0
    sched.close()

    assert found and result == expected, "the early result should equal the sequential one"
    print(f"decode {decode_s:.2f} s, tool {decode_s:.2f} s ({RATE:.0f} tok/s replay)")
    print(f"sequential  {sequential:.2f} s   (decode + tool = {2 * decode_s:.2f} s)")
    print(f"partial     {partial:.2f} s   (max(decode, tool) + one line = "
          f"{decode_s + per_line:.2f} s)")
    print(f"reduction   {100 * (1 - partial / sequential):.1f} %")


if __name__ == "__main__":
    asyncio.run(main())
