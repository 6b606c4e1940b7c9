"""Many concurrent streams on one event loop: dispatch delay, throughput, exactly-once delivery.

For each concurrency ``N`` one :class:`~conveyor_integrations.scheduler.Scheduler` is shared by
``N`` requests driven at once on one asyncio loop in the calling thread, as an agent server would
drive them: each request replays (:class:`~conveyor_integrations.backends.replay.Replay`, at
``tokens_per_s`` per stream, every stream's tokens released on the same ticks as a batched engine
releases them; ``None``: as fast as possible) a hermes message of ``calls_per_request`` calls,
alternately of an ``items=`` tool (one piece per list item) and of a ``stream=..., unit="line"``
tool (one piece per line), and goes through the library's own turn loop
(:func:`~conveyor_integrations.turn.stream_turn`). The tools are cheap async no-ops that record
when each piece starts. Reported per ``N``:

* ``dispatch_*_ms``: a piece's start in its tool minus the moment the parser emitted its event
  (stamped as the parser returns it, before the session routes it: routing is part of dispatch);
* ``aggregate_tokens_per_s``: all streams' tokens over the wall time of the whole batch (with
  ``tokens_per_s=None`` it is the sustained throughput of one loop plus the scheduler);
* ``lost``: calls whose claimed result is missing or wrong, plus pieces that never started;
  ``duplicated``: pieces started more than once. Both must be 0. Example::

    >>> rows = measure_scale(concurrency=(2,), tokens_per_s=None)
    >>> rows[0]["streams"], rows[0]["pieces"], rows[0]["lost"], rows[0]["duplicated"]
    (2, 18, 0, 0)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from ..backends.base import ChatRequest
from ..backends.replay import Replay
from ..events import Event, ItemDone, TextChunk
from ..parsing import get_parser
from ..partial import partial_tool
from ..policy import BoundTools
from ..scheduler import Scheduler
from ..turn import TurnCollector, stream_turn
from .workload_base import StampingParser

__all__ = ["ameasure_scale", "measure_scale", "transcript"]


def _pieces(request: int, call: int, n: int) -> list[str]:
    return [f"r{request} c{call} piece {j}" for j in range(n)]


def transcript(request: int, calls: int, pieces: int = 3) -> tuple[str, list[Any]]:
    """Request ``request``'s hermes message and each call's expected result.

    Every piece's text names its request, call and position, so it keys its own timings.
    """
    parts = [f"Working on task {request}; looking things up.\n"]
    expected: list[Any] = []
    for k in range(calls):
        if k % 2 == 0:
            queries = _pieces(request, k, pieces)
            call = {"name": "search", "arguments": {"queries": queries, "k": 3}}
            expected.append("\n".join(f"found {q}" for q in queries))
        else:
            text = "".join(f"{p}\n" for p in _pieces(request, k, pieces))
            call = {"name": "write", "arguments": {"text": text}}
            expected.append(text)
        parts.append(f"<tool_call>{json.dumps(call)}</tool_call>\n")
    return "".join(parts), expected


def _stamper(stamps: dict[str, float]) -> Callable[[float, list[Event]], None]:
    """Note when each piece event was emitted, keyed by the piece's text."""

    def note(now: float, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, ItemDone):
                stamps[str(ev.value)] = now
            elif isinstance(ev, TextChunk):
                stamps[ev.text.rstrip("\n")] = now

    return note


class _Tally:
    def __init__(self) -> None:
        self.starts: defaultdict[str, list[float]] = defaultdict(list)
        self.stamps: dict[str, float] = {}
        self.lost = 0
        self.tokens = 0


async def _request(sched: Scheduler, tools: BoundTools, r: int, calls: int, pieces: int,
                   tokens_per_s: float | None, tally: _Tally) -> None:
    text, expected = transcript(r, calls, pieces)
    replay = Replay(text, tokens_per_s=tokens_per_s, seed=r)
    parser = StampingParser(get_parser("hermes", streams=tools.streams()),
                            _stamper(tally.stamps))
    session = sched.session(f"scale-{r}", tools=tools)
    collector = TurnCollector(session)
    async for delta, events in stream_turn(replay, ChatRequest([]), parser=parser,
                                           session=session):
        collector.add(delta, events)
    result = collector.result()
    tally.tokens += sum(replay.emitted)
    tally.lost += max(0, len(expected) - len(result.calls))
    for call in result.calls:
        found, value = await sched.aclaim(call.id, args=call.args)
        if not found or call.index >= len(expected) or value != expected[call.index]:
            tally.lost += 1


async def _level(n: int, tokens_per_s: float | None, calls: int,
                 pieces: int) -> dict[str, Any]:
    tally = _Tally()
    sched = Scheduler()
    try:
        async def search(queries: list[str], k: int = 3) -> str:
            now = time.perf_counter()
            for q in queries:
                tally.starts[q].append(now)
            return "\n".join(f"found {q}" for q in queries)

        async def write(text: str) -> str:
            now = time.perf_counter()
            for line in text.splitlines():
                tally.starts[line].append(now)
            return text

        tools = BoundTools([
            partial_tool(search, items="queries", combine="\n".join),
            partial_tool(write, stream="text", unit="line", combine="".join)])
        t0 = time.perf_counter()
        await asyncio.gather(*(_request(sched, tools, r, calls, pieces, tokens_per_s, tally)
                               for r in range(n)))
        wall = time.perf_counter() - t0
    finally:
        sched.close()
    want = [p for r in range(n) for k in range(calls) for p in _pieces(r, k, pieces)]
    started = [p for p in want if tally.starts.get(p)]
    delays = [1e3 * (tally.starts[p][0] - tally.stamps[p]) for p in started if p in tally.stamps]
    if len(delays) >= 2:
        cuts = statistics.quantiles(delays, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    else:
        p50 = p99 = delays[0] if delays else float("nan")
    return {"streams": n, "tokens": tally.tokens, "wall_s": wall,
            "aggregate_tokens_per_s": tally.tokens / wall if wall > 0 else float("inf"),
            "dispatch_p50_ms": p50, "dispatch_p99_ms": p99,
            "dispatch_max_ms": max(delays, default=float("nan")),
            "pieces": len(started), "lost": tally.lost + len(want) - len(started),
            "duplicated": sum(len(v) > 1 for v in tally.starts.values())
            + len(set(tally.starts) - set(want))}


async def ameasure_scale(concurrency: Sequence[int] = (1, 16, 64, 256),
                         tokens_per_s: float | None = 50.0, calls_per_request: int = 3, *,
                         pieces_per_call: int = 3,
                         progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """:func:`measure_scale` on the running loop (the requests share it with its other work)."""
    rows = []
    for n in concurrency:
        row = await _level(n, tokens_per_s, calls_per_request, pieces_per_call)
        rows.append(row)
        if progress is not None:
            progress(f"{n} streams: {row['aggregate_tokens_per_s']:.0f} tokens/s, dispatch "
                     f"p50 {row['dispatch_p50_ms']:.2f} ms, p99 {row['dispatch_p99_ms']:.2f} ms, "
                     f"lost {row['lost']}, duplicated {row['duplicated']}")
    return rows


def measure_scale(concurrency: Sequence[int] = (1, 16, 64, 256),
                  tokens_per_s: float | None = 50.0, calls_per_request: int = 3, *,
                  pieces_per_call: int = 3,
                  progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per concurrency ``N`` (see the module's docstring), on a new loop in this thread.

    Rows: ``streams``, ``tokens``, ``wall_s``, ``aggregate_tokens_per_s``, ``dispatch_p50_ms``,
    ``dispatch_p99_ms``, ``dispatch_max_ms``, ``pieces``, ``lost``, ``duplicated``.
    """
    return asyncio.run(ameasure_scale(concurrency, tokens_per_s, calls_per_request,
                                      pieces_per_call=pieces_per_call, progress=progress))
