"""What ``conveyor analyze`` prints and writes: the tables, the summary line, the JSON, the PNGs.

Per run: recorded task time, tool time, and each mode's time and saving. Per tool: its calls,
the strategy the estimate used, its tool time and what partial execution saves on it. The
summary line is the one a team pastes. matplotlib is imported only to draw. Example::

    >>> from .estimate import RunEstimate, TurnEstimate
    >>> turn = TurnEstimate(0, 0.0, 2.0, 3.0, "chunks", {"complete_call": 3.0, "partial": 2.4,
    ...                                            "bound": 2.1})
    >>> summary_line([RunEstimate("r", "chatlog", 10.0, [turn])])
    'on 1 run: median task 10.0 s; partial execution would save 0.6 s (6.0%), complete-call dispatch 0.0 s (0.0%), the pipeline bound 0.9 s (9.0%)'
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .estimate import MODES, RunEstimate

__all__ = ["plot_run", "rich_tables", "run_rows", "summary_line", "tool_rows"]

_WORDS = {"partial": "partial execution", "complete_call": "complete-call dispatch",
          "bound": "the pipeline bound"}


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole > 0 else 0.0


def summary_line(runs: Sequence[RunEstimate]) -> str:
    """``on N runs: median task T s; partial execution would save S s (P%), ...``: per-run
    medians of the saving, and its share of all recorded task time."""
    if not runs:
        return "no runs"
    total = sum(r.recorded_s for r in runs)
    parts = []
    for mode in ("partial", "complete_call", "bound"):
        saved = statistics.median(r.saved(mode) for r in runs)
        share = _pct(sum(r.saved(mode) for r in runs), total)
        parts.append(f"{_WORDS[mode]} {saved:.1f} s ({share}%)")
    first = parts[0].replace("partial execution", "partial execution would save", 1)
    return (f"on {len(runs)} run{'s' if len(runs) != 1 else ''}: median task "
            f"{statistics.median(r.recorded_s for r in runs):.1f} s; "
            + ", ".join([first, *parts[1:]]))


def run_rows(runs: Sequence[RunEstimate]) -> list[dict[str, Any]]:
    """One row per run (what the table shows and the JSON keeps)."""
    rows = []
    for r in runs:
        row: dict[str, Any] = {"run": r.name, "source": r.source, "turns": len(r.turns),
                               "calls": sum(len(t.calls) for t in r.turns),
                               "recorded_s": round(r.recorded_s, 3), "tool_s": r.tool_s()}
        for mode in MODES:
            row[f"{mode}_s"] = round(r.total(mode), 3)
            row[f"{mode}_saved_pct"] = _pct(r.saved(mode), r.recorded_s)
        if r.measured:
            row["measured"] = dict(r.measured)
        rows.append(row)
    return rows


def tool_rows(runs: Sequence[RunEstimate]) -> list[dict[str, Any]]:
    """One row per tool over all runs: calls, strategy, tool time, partial's saving on it (the
    seconds its calls' results are ready sooner than after the recorded decode end)."""
    by: dict[str, dict[str, Any]] = {}
    for r in runs:
        for t in r.turns:
            for c in t.calls:
                row = by.setdefault(c.name, {"tool": c.name, "calls": 0, "tool_s": 0.0,
                                             "strategies": set(), "earlier_s": 0.0})
                row["calls"] += 1
                row["tool_s"] += c.tool_s
                row["strategies"].add(c.strategy)
                sequential_end = t.decode_end + c.tool_s
                row["earlier_s"] += max(0.0, sequential_end - c.ends["partial"])
    out = []
    for row in sorted(by.values(), key=lambda x: -x["tool_s"]):
        out.append({**row, "tool_s": round(row["tool_s"], 3),
                    "earlier_s": round(row["earlier_s"], 3),
                    "strategies": sorted(row["strategies"])})
    return out


def rich_tables(runs: Sequence[RunEstimate]) -> list[Any]:
    """The per-run and per-tool tables for a rich console."""
    from rich.table import Table

    per_run = Table(title="Recorded runs: task time, and with each way of running the tools")
    for col in ("run", "turns", "calls", "recorded s", "tool s", "complete-call s",
                "partial s", "bound s"):
        per_run.add_column(col, justify="left" if col == "run" else "right")
    for row in run_rows(runs):
        cells = [f"{row[f'{m}_s']:.2f} (−{row[f'{m}_saved_pct']}%)" for m in MODES]
        per_run.add_row(row["run"], str(row["turns"]), str(row["calls"]),
                        f"{row['recorded_s']:.2f}", f"{row['tool_s']:.2f}", *cells)
    per_tool = Table(title="Per tool: what partial execution would start early")
    for col in ("tool", "calls", "strategy", "tool s", "ready sooner s"):
        per_tool.add_column(col, justify="left" if col in ("tool", "strategy") else "right")
    for row in tool_rows(runs):
        per_tool.add_row(row["tool"], str(row["calls"]), "; ".join(row["strategies"]),
                         f"{row['tool_s']:.2f}", f"{row['earlier_s']:.2f}")
    return [per_run, per_tool]


def plot_run(run: RunEstimate, path: Path) -> Path:
    """A timeline PNG of ``run``: per turn its decode bar, then one lane per mode with its
    calls' tool bars (recorded after decoding, and where each mode would run them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanes = ["recorded", *MODES]
    colours = {"recorded": "#8c8c8c", "complete_call": "#dd8452", "partial": "#55a868",
               "bound": "#c44e52"}
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.5 * len(lanes) * max(1, len(run.turns))))
    y = 0.0
    ticks, labels = [], []
    for turn in run.turns:
        ax.barh(y, turn.decode_end - turn.start, left=turn.start, height=0.6, color="#4c72b0")
        ticks.append(y)
        labels.append(f"turn {turn.index} decode")
        for lane in lanes:
            y += 1
            for c in turn.calls:
                end = turn.decode_end + c.tool_s if lane == "recorded" else c.ends[lane]
                ax.barh(y, c.tool_s, left=end - c.tool_s, height=0.6, color=colours[lane])
            finish = turn.recorded_end if lane == "recorded" else turn.ends[lane]
            ax.plot([finish, finish], [y - 0.4, y + 0.4], color="#222222", lw=1)
            ticks.append(y)
            labels.append(lane.replace("_", "-"))
        y += 1.5
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run's first request (each turn at its recorded start)")
    ax.set_title(f"{run.name}: recorded {run.recorded_s:.2f} s, partial "
                 f"{run.total('partial'):.2f} s, bound {run.total('bound'):.2f} s", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
