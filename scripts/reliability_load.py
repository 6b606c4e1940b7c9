"""The load test of tests/reliability/test_load.py with larger counts, as a command.

    .venv/bin/python scripts/reliability_load.py --runs 500 --turns 3 --batches 10

Per framework (LangChain ``create_agent`` over ``ChatConveyor``, LlamaIndex ``FunctionAgent``
over ``ConveyorLLM``), ``--batches`` batches of ``--runs`` concurrent agent runs, each run
``--turns`` tool-call turns (a ``start_on`` tool and an ``items=`` tool per turn) and an answer,
on its own ``Replay`` (as fast as possible). Prints a markdown table: requests, tool executions
checked, lost results, duplicated executions, misdelivered results, tasks and threads left, the
scheduler's registry, and RSS after the first and the last batch (after gc).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # type: ignore[import-untyped]

from conveyor_integrations.scheduler import Scheduler, set_default_scheduler
from tests.reliability.test_load import (
    BatchReport,
    ExecLog,
    expected_keys,
    lc_run,
    lc_tools,
    li_run,
    li_tools,
    library_objects,
    live_objects,
    loop_tasks,
    run_batch,
    settle,
)

MiB = 1024 * 1024


async def load(framework: str, sched: Scheduler, runs: int, turns: int, batches: int,
               concurrency: int | None) -> dict[str, Any]:
    log = ExecLog()
    tools, runner = ((lc_tools(log), lc_run) if framework == "langchain"
                     else (li_tools(log), li_run))
    proc = psutil.Process()
    row: dict[str, Any] = {"framework": framework, "requests": 0, "tool_results": 0,
                           "misdelivered": 0, "wrong_answers": 0, "rss": [], "objects": []}
    t0 = time.perf_counter()
    for b in range(batches):
        rep = BatchReport()
        await run_batch(runner, range(b * runs, (b + 1) * runs), turns, tools, rep, concurrency)
        await settle(sched)
        row["requests"] += rep.requests
        row["tool_results"] += rep.tool_calls
        row["misdelivered"] += len(rep.misdelivered)
        row["wrong_answers"] += len(rep.wrong_answers)
        for line in (rep.misdelivered + rep.wrong_answers)[:5]:
            print("  !", line, file=sys.stderr)
        del rep
        objects = live_objects()
        row["objects"].append(library_objects(objects))
        row["rss"].append(proc.memory_info().rss)
        print(f"  {framework} batch {b + 1}/{batches}: {time.perf_counter() - t0:.1f} s, "
              f"RSS {row['rss'][-1] / MiB:.0f} MiB", file=sys.stderr)
    want = expected_keys(range(batches * runs), turns)
    row["seconds"] = time.perf_counter() - t0
    row["executions"] = sum(want.values())
    row["expected_results"] = batches * runs * turns * 2
    row["lost"] = sum(1 for k in want if log.counts[k] == 0) + (
        row["expected_results"] - row["tool_results"])
    row["duplicated"] = sum(n - 1 for n in log.counts.values() if n > 1)
    row["unexpected"] = sum(n for k, n in log.counts.items() if k not in want)
    row["early"] = log.early
    row["pending"] = sched.pending()
    row["loop_tasks"] = loop_tasks(sched)
    row["caller_tasks"] = len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])
    row["claimed"] = len(sched.store._claimed)
    return row


def one_framework(framework: str, args: argparse.Namespace) -> dict[str, Any]:
    before = {t.ident for t in threading.enumerate()}
    sched = Scheduler(claim_timeout=300.0)
    previous = set_default_scheduler(sched)
    try:
        row = asyncio.run(load(framework, sched, args.runs, args.turns, args.batches,
                               args.concurrency))
    finally:
        sched.close()
        set_default_scheduler(previous)
    gc.collect()
    for t in threading.enumerate():   # the pool is shut down without waiting: give it time
        if t.ident not in before and t.name.startswith("conveyor"):
            t.join(timeout=5)
    row["threads"] = [t.name for t in threading.enumerate()
                      if t.ident not in before and t.is_alive()]
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=200, help="concurrent agent runs per batch")
    p.add_argument("--turns", type=int, default=3, help="tool-call turns per run")
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=None,
                   help="at most this many runs at once (default: the whole batch)")
    p.add_argument("--framework", choices=["langchain", "llamaindex", "both"], default="both")
    args = p.parse_args(argv)
    frameworks = ["langchain", "llamaindex"] if args.framework == "both" else [args.framework]
    rows = [one_framework(f, args) for f in frameworks]

    print(f"\nLoad: {args.batches} batches x {args.runs} concurrent runs x {args.turns} tool "
          "turns + answer (Replay, as fast as possible; 2 decorated tools per turn)\n")
    print("| framework | requests | tool executions checked | results checked | lost results "
          "| duplicated executions | misdelivered | early | tasks left (loop/caller) "
          "| threads left | registry left | library objects batch 1 -> last "
          "| RSS batch 1 -> last | wall |")
    print("|---" * 14 + "|")
    bad = 0
    for r in rows:
        problems = (r["lost"] + r["duplicated"] + r["unexpected"] + r["misdelivered"]
                    + r["wrong_answers"] + r["loop_tasks"] + r["caller_tasks"]
                    + len(r["threads"]) + r["pending"])
        bad += problems
        print(f"| {r['framework']} | {r['requests']} | {r['executions']} | {r['tool_results']} "
              f"| {r['lost']} | {r['duplicated']} | {r['misdelivered'] + r['wrong_answers']} "
              f"| {r['early']}/{r['executions']} | {r['loop_tasks']}/{r['caller_tasks']} "
              f"| {len(r['threads'])} | {r['pending']} "
              f"| {r['objects'][0]} -> {r['objects'][-1]} "
              f"| {r['rss'][0] / MiB:.0f} -> {r['rss'][-1] / MiB:.0f} MiB "
              f"| {r['seconds']:.0f} s |")
    if any(r["threads"] for r in rows):
        print("\nthreads left:", [r["threads"] for r in rows])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
