"""Early tool work through Ray: per-piece dispatch beside in-process, and many agent processes
sharing one cluster of sandboxes.

Each request replays (:class:`~conveyor_integrations.backends.replay.Replay`, ``tokens_per_s``
per stream) a hermes message of three calls and goes through the library's own turn loop
(:func:`~conveyor_integrations.turn.stream_turn`):

* ``search(queries)``, ``items=`` (each query a Ray task, when Ray is used);
* ``write(text)``, ``stream=..., unit="line"`` (one Ray actor per call, fed each line);
* ``run_python(code)``, the sandboxed Python tool (one Ray actor per call, holding the
  sandbox; each statement prints when it ran).

Every body reports, in its result, when each piece started (``time.perf_counter``: one clock
for every process of a machine). Per piece, *dispatch* is that start minus the moment the
parser emitted the piece's event. ``lost`` counts pieces missing from the results handed over
and calls with no result; ``duplicated`` counts pieces that ran more than once (every run is
also appended to a log file, so a run whose result was thrown away still counts). Both must be
0. ``processes`` agent processes (each its own scheduler and event loop, joined to one cluster)
run ``requests`` requests each at once, after warming the tools (``RayExecutor.warm``, as a
service does when it starts); ``wall_s`` is the longest process's time for its requests. Run by ``scripts/bench_ray.py``; numbers in
BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..backends.base import ChatRequest
from ..backends.replay import Replay
from ..events import Event, ItemDone, TextChunk
from ..parsing import get_parser
from ..partial import partial_tool
from ..policy import BoundTools
from ..scheduler import Scheduler
from ..store import ResultStore
from ..tools.python import Limits, partial_python, run_python_code
from ..turn import TurnCollector, stream_turn
from .workload_base import StampingParser

__all__ = ["agent_process", "make_tools", "measure", "transcript"]

LIMITS = Limits(wall_s=60.0, cpu_s=60, memory_mb=1024)


def _log(path: str, key: str) -> None:
    with open(path, "a") as f:
        f.write(key + "\n")


def make_tools(log: str, executor: Any = None) -> list[Any]:
    """The three tools; ``executor`` None runs them here."""

    def search(queries: list[str]) -> str:
        now = time.perf_counter()
        for q in queries:
            _log(log, q)
        return json.dumps([[q, now] for q in queries])

    def write(text: str) -> str:
        now = time.perf_counter()
        lines = text.splitlines()
        for line in lines:
            _log(log, line)
        return json.dumps([[line, now] for line in lines])

    def run_python(code: str) -> str:
        return run_python_code(code, limits=LIMITS)

    def merge(parts: list[str]) -> str:
        return json.dumps([x for p in parts for x in json.loads(p)])

    return [partial_tool(search, items="queries", combine=merge, executor=executor),
            partial_tool(write, stream="text", unit="line", combine=merge, executor=executor),
            partial_python(run_python, limits=LIMITS, executor=executor)]


def _keys(tag: str, kind: str, n: int) -> list[str]:
    return [f"{tag} {kind} {j}" for j in range(n)]


def transcript(tag: str, pieces: int) -> tuple[str, list[str]]:
    """One request's message and the piece keys it must give back, once each."""
    queries, lines, prints = (_keys(tag, k, pieces) for k in ("query", "line", "stmt"))
    code = "import time\n" + "".join(
        f"print(json.dumps([{p!r}, time.perf_counter()]))\n" for p in prints)
    calls = [{"name": "search", "arguments": {"queries": queries}},
             {"name": "write", "arguments": {"text": "".join(f"{x}\n" for x in lines)}},
             {"name": "run_python", "arguments": {"code": "import json\n" + code}}]
    text = f"Task {tag}: three tools.\n" + "".join(
        f"<tool_call>{json.dumps(c)}</tool_call>\n" for c in calls)
    return text, queries + lines + prints


def _stamper(stamps: dict[str, float]) -> Any:
    def note(now: float, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, ItemDone):
                stamps[str(ev.value)] = now
            elif isinstance(ev, TextChunk):
                text = ev.text.rstrip("\n")
                if text.startswith("print(json.dumps(["):
                    text = text.split("'")[1]
                stamps[text] = now
    return note


def _starts(value: Any) -> list[tuple[str, float]]:
    if not isinstance(value, str):
        return []
    text = value.strip()
    if text.startswith("[["):
        return [(k, float(t)) for k, t in json.loads(text)]
    return [(k, float(t)) for k, t in (json.loads(line) for line in text.splitlines())]


async def _request(sched: Scheduler, tools: BoundTools, tag: str, pieces: int,
                   rate: float | None, out: dict[str, Any]) -> None:
    text, want = transcript(tag, pieces)
    stamps: dict[str, float] = {}
    parser = StampingParser(get_parser("hermes", streams=tools.streams()), _stamper(stamps))
    session = sched.session(tag, tools=tools)
    collector = TurnCollector(session)
    async for delta, events in stream_turn(Replay(text, tokens_per_s=rate), ChatRequest([]),
                                           parser=parser, session=session):
        collector.add(delta, events)
    got: dict[str, float] = {}
    for call in collector.result().calls:
        try:
            found, value = await sched.aclaim(call.id, args=call.args)
        except Exception as exc:  # noqa: BLE001 - counted, reported
            out["errors"].append(f"{type(exc).__name__}: {exc}")
            continue
        out["calls"] += int(found)
        for key, start in (_starts(value) if found else []):
            out["dup"] += key in got
            got[key] = start
    for key in want:
        if key in got and key in stamps:
            out["dispatch_ms"].append(1e3 * (got[key] - stamps[key]))
        else:
            out["lost"] += 1


async def _agent(address: str | None, proc: int, requests: int, pieces: int,
                 rate: float | None, log: str) -> dict[str, Any]:
    executor = None
    if address is not None:
        from ..executors import RayExecutor

        executor = RayExecutor(address, num_cpus=0.25, max_in_flight=512,
                               warm_actors=requests)   # one started actor per call at once
    made = make_tools(log, executor)
    if executor is not None:
        executor.warm(*made)                  # as a service does when it starts
    tools = BoundTools(made)
    out: dict[str, Any] = {"calls": 0, "lost": 0, "dup": 0, "dispatch_ms": [], "errors": []}
    sched = Scheduler(store=ResultStore(), max_threads=64)
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(_request(sched, tools, f"p{proc}r{r}", pieces, rate, out)
                               for r in range(requests)))
    finally:
        sched.close()
        out["wall_s"] = time.perf_counter() - t0
        if executor is not None:
            executor.shutdown()               # this process's connection; the cluster stays
    return out


def agent_process(args: tuple[str | None, int, int, int, float | None, str]) -> dict[str, Any]:
    """One agent process: its own loop and scheduler, joined to the cluster at ``address``."""
    return asyncio.run(_agent(*args))


def measure(address: str | None, *, processes: int = 1, requests: int = 1, pieces: int = 4,
            tokens_per_s: float | None = 50.0) -> dict[str, Any]:
    """One row: ``processes`` x ``requests`` requests at once; ``address`` None: in-process."""
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "runs.log")
        Path(log).touch()
        jobs = [(address, p, requests, pieces, tokens_per_s, log) for p in range(processes)]
        if processes == 1:
            parts = [agent_process(jobs[0])]
        else:
            with multiprocessing.get_context("spawn").Pool(processes) as pool:
                parts = pool.map(agent_process, jobs)
        runs = Counter(Path(log).read_text().splitlines())
    delays = [d for p in parts for d in p["dispatch_ms"]]
    cuts = statistics.quantiles(delays, n=100, method="inclusive") if len(delays) > 1 else [
        float("nan")] * 99
    want = processes * requests * pieces * 3
    return {"where": "ray" if address else "in-process", "processes": processes,
            "requests": processes * requests, "calls": sum(p["calls"] for p in parts),
            "pieces": want, "dispatch_p50_ms": cuts[49], "dispatch_p99_ms": cuts[98],
            "lost": sum(p["lost"] for p in parts),
            "duplicated": sum(n - 1 for n in runs.values() if n > 1)
            + sum(p["dup"] for p in parts),
            "errors": [e for p in parts for e in p["errors"]][:5],
            "wall_s": max(p["wall_s"] for p in parts)}
