"""``conveyor bench``: every workload, four ways, at several token rates; overhead; scale.

::

    conveyor bench                                  # replay at 20, 50, 100, 200 tokens/s
    conveyor bench --backend vllm --runs 5          # the real engine, forced transcripts
    conveyor bench --workloads codegen,search --rates 50 --runs 3 --no-scale
    conveyor bench --tasks                          # whole agent tasks (see task_bench.py)
    conveyor bench --transcripts msgs.jsonl --tools myagent.tools:TOOLS --rates 50 --runs 3

For each rate and workload, ``--runs`` runs take the workload's transcripts in turn; each run
decodes the transcript once per mode (sequential, complete-call, partial, in that order) and
the partial run's own piece times give the ideal. Writes ``results.json`` (every run and
figure), ``summary.md`` and one timeline PNG per workload (rate 50, or the engine) to ``--out``.
The search and plan lookups go to a local HTTP server whose latency (``--search-latency``)
stands for the network; the replay token rate stands for a GPU's decode speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..backends.base import Backend
from .harness import ModeBench
from .records import MODES, RunRecord
from .report import markdown_table, overhead_table, rich_table, scale_table, summarize
from .workload_base import Env
from .workloads import WORKLOADS

__all__ = ["backend_for", "main", "parse_args", "run_bench"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options of ``conveyor bench``."""
    p = argparse.ArgumentParser(prog="conveyor bench", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=("replay", "vllm"), default="replay")
    p.add_argument("--model", default=None, help="vLLM model path (default: bundled SmolLM2)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    p.add_argument("--rates", default=None,
                   help="replay tokens/s, comma-separated (default 20,50,100,200; --tasks: 50,100)")
    p.add_argument("--runs", type=int, default=5, help="runs per workload and rate (>= 1)")
    p.add_argument("--search-latency", type=float, default=1.5,
                   help="seconds the local search server waits per request (the network)")
    p.add_argument("--out", default="bench-results", help="folder for JSON, markdown, PNGs")
    p.add_argument("--no-overhead", action="store_true", help="skip the per-token CPU cost")
    p.add_argument("--no-scale", action="store_true", help="skip the concurrency scale test")
    p.add_argument("--scale", default="1,16,64,256", help="concurrent streams, comma-separated")
    p.add_argument("--tasks", action="store_true",
                   help="whole agent tasks, from the user's message to the answer")
    p.add_argument("--families", default="research,analysis,sql,planner",
                   help="--tasks: task families, comma-separated")
    p.add_argument("--speculative", action="store_true",
                   help="--tasks: also run partial + speculative calls (read-only follow-ups)")
    p.add_argument("--frameworks", default="langchain,llamaindex",
                   help="--tasks: agent frameworks, comma-separated")
    p.add_argument("--transcripts", metavar="FILE", default=None,
                   help="your recorded assistant messages (JSON lines), run instead of the "
                        "workloads (see user_transcripts.py)")
    p.add_argument("--tools", metavar="MODULE:ATTR", default=None,
                   help="--transcripts: your tools, a list importable as MODULE:ATTR")
    args = p.parse_args(argv)
    if (args.transcripts is None) != (args.tools is None):
        p.error("--transcripts FILE and --tools MODULE:ATTR go together")
    if args.transcripts is not None and (args.backend != "replay" or args.tasks):
        p.error("--transcripts replays your messages at --rates: not with --backend vllm or "
                "--tasks")
    if args.rates is None:
        args.rates = "50,100" if args.tasks else "20,50,100,200"
    if args.tasks:
        from .tasks import FAMILIES

        bad = set(args.families.split(",")) - set(FAMILIES)
        if bad:
            p.error(f"unknown families {sorted(bad)}; known: {', '.join(FAMILIES)}")
        bad = set(args.frameworks.split(",")) - {"langchain", "llamaindex"}
        if bad:
            p.error(f"unknown frameworks {sorted(bad)}; known: langchain, llamaindex")
    unknown = set(args.workloads.split(",")) - set(WORKLOADS)
    if unknown:
        p.error(f"unknown workloads {sorted(unknown)}; known: {', '.join(WORKLOADS)}")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def _label(rate: float | None) -> str:
    return "engine" if rate is None else f"{rate:g} tok/s"


def _cell_line(cell: list[RunRecord], name: str, rate: float | None) -> str:
    medians = {m: statistics.median(r.latency_s for r in cell if r.mode == m)
               for m in MODES if any(r.mode == m for r in cell)}
    return f"{name} @ {_label(rate)}: " + ", ".join(f"{m} {v:.2f} s" for m, v in medians.items())


def _machine() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "processor": platform.processor()}


async def _backends(args: argparse.Namespace) -> tuple[list[float | None], Any]:
    if args.backend == "replay":
        return [float(r) for r in args.rates.split(",")], None
    from ..backends.vllm_engine import VLLMEngine

    return [None], VLLMEngine(args.model)


def backend_for(engine: Any, text: str, rate: float | None, seed: int
                 ) -> tuple[Backend, dict[str, Any]]:
    """The backend and sampling that decode ``text``: a ``Replay`` at ``rate``, or ``engine``
    forced to decode exactly ``text`` (a single allowed choice, vLLM's structured outputs)."""
    if engine is None:
        from ..backends.replay import Replay

        return Replay(text, tokens_per_s=rate, seed=seed), {}
    return engine, {"temperature": 0.0, "max_tokens": 4096,
                    "structured_outputs": {"choice": [text]}}


async def _cell(benches: dict[str, ModeBench], texts: list[tuple[str, str]], rate: float | None,
                engine: Any, args: argparse.Namespace, tick: Any) -> tuple[list[RunRecord],
                                                                      list[str]]:
    """The runs of one workload at one rate; the modes' order turns with each run so that no
    mode always goes first (cold caches); errors are reported, not fatal."""
    records: list[RunRecord] = []
    problems: list[str] = []
    for run in range(args.runs):
        tname, text = texts[run % len(texts)]
        order = MODES[run % len(MODES):] + MODES[:run % len(MODES)]
        got: dict[str, RunRecord] = {}
        for mode in order:
            tick(f"{benches[mode].workload.name} {tname} {mode} @ {_label(rate)}")
            backend, sampling = backend_for(engine, text, rate, run)
            try:
                got[mode] = await benches[mode].run(tname, backend, rate=rate, run=run,
                                                    sampling=sampling, backend_name=args.backend)
            except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
                problems.append(f"{tname} run {run} {mode}: {type(exc).__name__}: {exc}")
        records.extend(got[m] for m in MODES if m in got)
        if len({r.result for r in got.values() if not r.aborted}) > 1:
            problems.append(f"{tname} run {run}: the modes' tool results differ")
    return records, problems


async def _warm_up(engine: Any, texts: list[tuple[str, str]], bench: ModeBench) -> None:
    """Decode each transcript once, untimed: the engine compiles each forced choice's grammar
    on its first request, which would otherwise fall on whichever mode comes first."""
    for tname, text in texts:
        backend, sampling = backend_for(engine, text, None, 0)
        await bench.run(tname, backend, rate=None, sampling=sampling, backend_name="warm-up")


async def run_bench(args: argparse.Namespace, progress: Any = None) -> dict[str, Any]:
    """Run the workloads; return every figure (what ``results.json`` holds)."""
    from ..tools.search import aclose_shared_client
    from .search_server import SearchServer
    from .shop_db import make_shop_db

    names = args.workloads.split(",")
    rates, engine = await _backends(args)
    records: list[RunRecord] = []
    problems: list[str] = []
    total = len(rates) * len(names) * args.runs * len(MODES)
    task = progress.add_task("runs", total=total) if progress is not None else None

    def tick(description: str) -> None:
        if progress is not None:
            progress.update(task, description=description, advance=1)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp, \
            SearchServer(latency_s=args.search_latency) as server:
        env = Env(server.url, make_shop_db(Path(tmp) / "shop.db"), Path(tmp))
        try:
            for name in names:
                wl = WORKLOADS[name]
                benches = {m: ModeBench(wl, env, m) for m in MODES}
                texts = list(wl.transcripts.items())
                try:
                    if engine is not None:
                        await _warm_up(engine, texts, benches["sequential"])
                    for rate in rates:
                        got, bad = await _cell(benches, texts, rate, engine, args, tick)
                        records += got
                        problems += [f"{name} @ {_label(rate)}: {p}" for p in bad]
                        if progress is not None and got:   # a line per cell, also in a log
                            progress.console.print(_cell_line(got, name, rate))
                finally:
                    for bench in benches.values():
                        with contextlib.suppress(Exception):
                            bench.close()
        finally:
            await aclose_shared_client()
            if engine is not None:
                await engine.aclose()
    for problem in problems:
        if progress is not None:
            progress.console.print(f"[yellow]problem:[/yellow] {problem}")
    return {"machine": _machine(), "backend": args.backend, "rates": rates,
            "runs": args.runs, "search_latency_s": args.search_latency,
            "wall_s": round(time.perf_counter() - started, 1), "problems": problems,
            "summary": summarize(records), "records": [r.as_dict() for r in records]}


def _plots(out: Path, records: list[dict[str, Any]], rate: float | None) -> list[str]:
    """One PNG per workload: the transcript of the run whose partial latency is the median."""
    from .plot import plot_timeline
    from .records import Span

    made = []
    for name in dict.fromkeys(r["workload"] for r in records):
        cell = [r for r in records if r["workload"] == name and r["rate"] == rate]
        partial = sorted((r for r in cell if r["mode"] == "partial"),
                         key=lambda r: r["latency_s"])
        if not partial:
            continue
        pick = partial[len(partial) // 2]
        runs = [RunRecord(**{**r, "spans": [Span(**s) for s in r["spans"]]})
                for r in cell if r["run"] == pick["run"]]
        title = (f"{name} ({pick['transcript']}) at "
                 f"{'the engine' if rate is None else f'{rate:g} tokens/s'}")
        made.append(str(plot_timeline(out / f"timeline_{name}.png", title, runs)))
    return made


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``conveyor bench``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 180)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tasks:
        from .task_bench import main_tasks

        return main_tasks(args, console, out)
    if args.transcripts is not None:
        from .user_cli import main_transcripts

        return main_transcripts(args, console, out, machine=_machine(), plots=_plots)
    overhead = None
    if not args.no_overhead:      # first, in a small heap: the library's cost, not the GC's
        from .overhead import measure_overhead

        overhead = measure_overhead()
    with Progress(TextColumn("{task.description:<44}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        results = asyncio.run(run_bench(args, progress))
    rows = results["summary"]
    label = "real engine, bundled SmolLM2" if args.backend == "vllm" else "replay"
    console.print(rich_table(rows, f"Completion latency, median of {args.runs} runs ({label})"))
    if overhead is not None:
        results["overhead"] = overhead
        worst = max(r["us_per_token"] for r in results["overhead"])
        console.print(f"library CPU per token: up to {worst:.2f} µs "
                      f"({100 * worst * 50 / 1e6:.3f} % of decode time at 50 tokens/s)")
    if not args.no_scale:
        from .scale import measure_scale

        levels = [int(n) for n in args.scale.split(",")]
        for key, rate in (("scale", 50.0), ("scale_unpaced", None)):
            results[key] = measure_scale(levels, tokens_per_s=rate)
            console.print("scale, " + ("50 tokens/s per stream" if rate else "as fast as possible"))
            for row in results[key]:
                console.print(f"{row['streams']:>5} streams: {row['aggregate_tokens_per_s']:8.0f} "
                              f"tok/s, dispatch p50 {row['dispatch_p50_ms']:.2f} ms, p99 "
                              f"{row['dispatch_p99_ms']:.2f} ms, lost {row['lost']}, "
                              f"duplicated {row['duplicated']}")
    plot_rate = None if args.backend == "vllm" else (50.0 if 50.0 in results["rates"]
                                                      else results["rates"][0])
    results["plots"] = _plots(out, results["records"], plot_rate)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    parts = [markdown_table(rows)]
    if "overhead" in results:
        parts.append(overhead_table(results["overhead"]))
    for key in ("scale", "scale_unpaced"):
        if key in results:
            parts.append(scale_table(results[key]))
    (out / "summary.md").write_text("\n\n".join(parts) + "\n")
    ratios = [r["ratio_to_ideal"] for r in rows if "ratio_to_ideal" in r]
    if ratios:
        console.print(f"partial / ideal: median {statistics.median(ratios):.3f}, "
                      f"worst {max(ratios):.3f}")
    console.print(f"wrote {out / 'results.json'}, {out / 'summary.md'} and "
                  f"{len(results['plots'])} timelines in {results['wall_s']} s of runs")
    return 0
