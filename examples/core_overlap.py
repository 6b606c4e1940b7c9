"""Overlap on the core API alone: a tool as slow as decoding, with and without partial execution.

A replayed model (50 tokens/s, standing for a GPU's decode speed) writes a call of ``slow_lookup``
whose ``key`` field comes first; the tool takes as long as decoding the whole message. Sequential
execution ends at ``decode + tool``; with ``@partial_tool(start_on=["key"])`` it ends at about
``max(decode, tool)``. Run:  python examples/core_overlap.py
"""

from __future__ import annotations

import asyncio
import time

from conveyor_integrations import Scheduler, partial_tool, run_turn
from conveyor_integrations.backends import ChatRequest, Replay
from conveyor_integrations.parsing import get_parser

NOTE = "a note the model writes after the key " * 8
TEXT = ('<tool_call>{"name": "slow_lookup", "arguments": {"key": "order-1234", "note": "'
        + NOTE + '"}}</tool_call>')
RATE = 50.0


async def main() -> None:
    decode_s = len(Replay(TEXT, RATE, seed=0).tokens(TEXT)) / RATE
    sched = Scheduler()

    def slow_lookup(key: str, note: str = "") -> str:
        time.sleep(decode_s)                     # as slow as decoding the message
        return f"status of {key}: shipped"

    # sequential: decode everything, then run the tool
    t0 = time.perf_counter()
    turn = await run_turn(Replay(TEXT, RATE, seed=0), ChatRequest([]),
                          parser=get_parser("hermes"), session=sched.session())
    slow_lookup(**turn.calls[0].args)
    sequential = time.perf_counter() - t0

    # partial: the tool starts when `key` is final; its result is claimed by call id
    partial_tool(slow_lookup, start_on=["key"], scheduler=sched)
    t0 = time.perf_counter()
    turn = await run_turn(Replay(TEXT, RATE, seed=0), ChatRequest([]),
                          parser=get_parser("hermes"), session=sched.session())
    found, result = await sched.aclaim(turn.calls[0].id, args=turn.calls[0].args)
    partial = time.perf_counter() - t0
    sched.close()

    assert found, "the early result should have been claimed"
    print(f"decode {decode_s:.2f} s, tool {decode_s:.2f} s ({RATE:.0f} tok/s replay)")
    print(f"sequential  {sequential:.2f} s   (decode + tool = {2 * decode_s:.2f} s)")
    print(f"partial     {partial:.2f} s   (max(decode, tool) = {decode_s:.2f} s)")
    print(f"reduction   {100 * (1 - partial / sequential):.1f} %   result: {result}")


if __name__ == "__main__":
    asyncio.run(main())
