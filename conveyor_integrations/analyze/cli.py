"""``conveyor analyze TRACE...``: what partial execution would have saved on recorded runs.

::

    conveyor analyze runs.json [more traces] [--kind auto|langsmith|otlp|chatlog|results]
        [--tools MODULE:ATTR] [--strategy NAME=SPEC ...] [--rate TOK_S] [--tool-format FMT]
        [--out DIR] [--no-plots]

Prints a table per run and per tool and the summary line; writes ``DIR/analysis.json`` (every
run's estimate, per turn and call) and ``DIR/timeline_<run>.png`` per run (the first 20).
Exit status: 0, or 2 when a trace or an option cannot be used (the message says which and why).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["main", "parse_args"]

_PLOTS = 20


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line of ``conveyor analyze``."""
    p = argparse.ArgumentParser(prog="conveyor analyze", description=(
        "What complete-call dispatch, partial execution and the pipeline bound would have "
        "saved on recorded agent runs."))
    p.add_argument("traces", nargs="+", metavar="TRACE",
                   help="LangSmith run exports, OTLP JSON spans, chat-completion logs (JSON "
                        "lines) or conveyor bench's results.json")
    p.add_argument("--kind", default="auto",
                   choices=("auto", "langsmith", "otlp", "chatlog", "results"))
    p.add_argument("--tools", metavar="MODULE:ATTR",
                   help="your tools (decorated with partial_tool or not): their strategies")
    p.add_argument("--strategy", action="append", default=[], metavar="NAME=SPEC",
                   help="a tool's strategy: start_on:F1,F2 | stream:FIELD[:line|statement] | "
                        "items:FIELD | complete (others: guessed per call)")
    p.add_argument("--rate", type=float, default=None, metavar="TOK_S",
                   help="decode messages the trace has no chunk times for at this rate "
                        "(default: each turn's own, output tokens over its duration)")
    p.add_argument("--tool-format", default=None, metavar="FMT",
                   help="the wire format of messages recorded as text (default: hermes)")
    p.add_argument("--out", type=Path, default=Path("analysis-out"))
    p.add_argument("--no-plots", action="store_true")
    return p.parse_args(argv)


def _strategies(args: argparse.Namespace) -> dict[str, Any]:
    from .strategy import Strategy, strategies_of_tools

    chosen: dict[str, Any] = {}
    if args.tools:
        from ..bench.user_transcripts import load_tools

        chosen.update(strategies_of_tools(load_tools(args.tools)))
    for text in args.strategy:
        name, strategy = Strategy.parse(text)
        chosen[name] = strategy
    return chosen


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:80] or "run"


def main(argv: list[str]) -> int:
    """Run ``conveyor analyze``; see the module's docstring."""
    from rich.console import Console

    from ..bench.user_transcripts_file import UserBenchError
    from ..parsing import PARSERS
    from .estimate import estimate_run
    from .readers import TraceError, read_traces
    from .report import plot_run, rich_tables, run_rows, summary_line, tool_rows

    args = parse_args(argv)
    console = Console()
    if args.tool_format is not None and args.tool_format not in PARSERS:
        console.print(f"[red]error:[/red] --tool-format {args.tool_format!r} is unknown; "
                      f"known: {', '.join(sorted(PARSERS))}")
        return 2
    if args.rate is not None and not args.rate > 0:
        console.print("[red]error:[/red] --rate must be a positive number of tokens per second")
        return 2
    try:
        strategies = _strategies(args)
        runs = read_traces(args.traces, kind=args.kind)
    except (TraceError, UserBenchError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    if not runs:
        console.print("[red]error:[/red] no agent runs with a model turn in "
                      + ", ".join(args.traces))
        return 2
    for run in runs:
        for turn in run.turns:
            if turn.tool_format is None and args.tool_format is not None:
                turn.tool_format = args.tool_format
    estimates = [estimate_run(r, strategies, rate=args.rate) for r in runs]
    for table in rich_tables(estimates):
        console.print(table)
    for est in estimates:
        for note in est.notes:
            console.print(f"note: {est.name}: {note}")
    line = summary_line(estimates)
    console.print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    if not args.no_plots:
        for i, est in enumerate(estimates[:_PLOTS]):
            plots.append(str(plot_run(est, args.out / f"timeline_{i:02d}_{_slug(est.name)}.png")))
    data = {"traces": [str(t) for t in args.traces], "summary": line,
            "strategies": {n: s.describe() for n, s in strategies.items()},
            "rate": args.rate, "runs": run_rows(estimates), "tools": tool_rows(estimates),
            "estimates": [e.as_dict() for e in estimates], "plots": plots}
    (args.out / "analysis.json").write_text(json.dumps(data, indent=1))
    console.print(f"wrote {args.out / 'analysis.json'}"
                  + (f" and {len(plots)} timelines" if plots else ""))
    return 0
