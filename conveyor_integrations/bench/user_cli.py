"""``conveyor bench --transcripts FILE --tools MODULE:ATTR``: your messages and tools, every mode.

The runs are :func:`~.user_transcripts.run_user_transcripts`'s; this writes what the built-in
workloads write (``results.json``, ``summary.md``, timelines), with a row per message and rate:
the messages of one file differ too much for one row per rate to mean much (its ideal column
would average only the messages that have one). Example::

    conveyor bench --transcripts msgs.jsonl --tools myagent.tools:TOOLS --rates 50 --runs 3
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .report import markdown_table, rich_table, summarize

__all__ = ["main_transcripts"]


def main_transcripts(args: Any, console: Any, out: Path, *, machine: dict[str, Any],
                     plots: Callable[[Path, list[dict[str, Any]], float | None], list[str]]
                     ) -> int:
    """Run ``args.transcripts`` with ``args.tools`` at ``args.rates``; write to ``out`` (with
    ``machine`` in the JSON and ``plots(out, records, rate)``'s timelines).
    Returns 2 on a file or tools error (printed, nothing run), 1 on a problem, else 0."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .user_transcripts import UserBenchError, by_message, run_user_transcripts

    rates = [float(r) for r in args.rates.split(",")]
    started = time.perf_counter()
    try:
        with Progress(TextColumn("{task.description:<44}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            bench = asyncio.run(run_user_transcripts(args.transcripts, args.tools, rates=rates,
                                                     runs=args.runs, progress=progress))
    except UserBenchError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    per_message = summarize(by_message(bench.records))
    results: dict[str, Any] = {
        "machine": machine, "backend": "replay", "rates": rates, "runs": args.runs,
        "transcripts": args.transcripts, "tools": args.tools,
        "wall_s": round(time.perf_counter() - started, 1), "problems": bench.problems,
        "notes": bench.notes, "summary_per_message": per_message,
        "records": [r.as_dict() for r in bench.records]}
    console.print(rich_table(per_message, f"Your transcripts, median of {args.runs} runs (replay)"))
    for note in bench.notes:
        console.print(f"note: {note}")
    for problem in bench.problems:
        console.print(f"[yellow]problem:[/yellow] {problem}")
    results["plots"] = plots(out, results["records"], 50.0 if 50.0 in rates else rates[0])
    (out / "results.json").write_text(json.dumps(results, indent=1))
    notes = "".join(f"\n- {n}" for n in bench.notes)
    (out / "summary.md").write_text(markdown_table(per_message)
                                    + ("\n" + notes if notes else "") + "\n")
    console.print(f"wrote {out / 'results.json'}, {out / 'summary.md'} and "
                  f"{len(results['plots'])} timelines")
    return 1 if bench.problems else 0
