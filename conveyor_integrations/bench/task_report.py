"""The tasks table (markdown) and a task's timeline across its turns (PNG).

The table has a row per family, framework, rate and variant: the median task time of each mode,
partial's reduction against sequential and the median ratio of partial to its summed bound; on
the real engine also the next turns' prefill figures. The timeline draws one panel per mode and
one row per turn: the turn's decoding as a bar, its tool work as thinner bars just below it,
the task's end as a solid line and, for partial, the summed bound as a dashed one. matplotlib
(Agg) is imported only when a plot is drawn. Example::

    >>> print(tasks_table([{"family": "sql", "framework": "langchain", "rate": 50.0,
    ...     "backend": "replay", "variant": "", "tasks": 3, "turns": 4.0, "sequential": 10.0,
    ...     "complete_call": 9.5, "partial": 8.0, "reduction_pct": 20.0,
    ...     "ratio_to_bound": 1.01}]).splitlines()[2])
    | sql | langchain | 50 tok/s | 3 | 4 | 10.00 s | 9.50 s | 8.00 s | 20.0 % | 1.010 |  |  |
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .task_records import TaskRecord

__all__ = ["plot_task", "speculation_table", "tasks_table"]

_HEAD = ("| family | framework | rate | tasks | turns | sequential | complete-call | partial "
         "| reduction | partial / bound | next-turn first token | next-turn cached / prompt "
         "tokens |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def _s(v: float | None) -> str:
    return "" if v is None else f"{v:.2f} s"


def tasks_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary rows (:func:`~.task_records.summarize_tasks`) as a markdown table."""
    lines = [_HEAD]
    for r in rows:
        rate = "engine" if r["rate"] is None else f"{r['rate']:g} tok/s"
        if r.get("variant"):
            rate += f", {r['variant']}"
        red = r.get("reduction_pct")
        ratio = r.get("ratio_to_bound")
        first = r.get("next_turn_first_token_s")
        cached, prompt = r.get("next_turn_cached_tokens"), r.get("next_turn_prompt_tokens")
        tokens = "" if cached is None or prompt is None else f"{cached:.0f} / {prompt:.0f}"
        lines.append(
            f"| {r['family']} | {r['framework']} | {rate} | {r['tasks']} | {r['turns']:g} "
            f"| {_s(r['sequential'])} | {_s(r['complete_call'])} | {_s(r['partial'])} "
            f"| {'' if red is None else f'{red:.1f} %'} | {'' if ratio is None else f'{ratio:.3f}'} "
            f"| {'' if first is None else f'{first * 1000:.0f} ms'} | {tokens} |")
    return "\n".join(lines)


_SPEC_HEAD = ("| family | framework | rate | predictions | sequential | partial "
              "| partial + speculative | reduction | hits / started | wasted tool s per task |\n"
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|")


def speculation_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows that ran speculative modes, one line per mode (``declared``: the tools'
    follow-ups; ``learned``: from the task's earlier turns): its task time against sequential
    and partial, its hits among the speculative runs started, and the median tool seconds a task
    wasted ("" when no row has speculative runs).

        >>> print(speculation_table([{"family": "research", "framework": "langchain",
        ...     "rate": 50.0, "variant": "", "sequential": 18.0, "partial": 17.5,
        ...     "speculative": 15.0, "speculative_reduction_pct": 16.7, "speculative_hits": 9,
        ...     "speculative_started": 20, "speculative_wasted_s": 7.5}]).splitlines()[2])
        | research | langchain | 50 tok/s | declared | 18.00 s | 17.50 s | 15.00 s | 16.7 % | 9 / 20 | 7.5 |
    """
    lines = [_SPEC_HEAD]
    for r in rows:
        rate = "engine" if r["rate"] is None else f"{r['rate']:g} tok/s"
        for mode, label in (("speculative", "declared"), ("learned", "learned")):
            if r.get(mode) is None:
                continue
            red = r.get(f"{mode}_reduction_pct")
            lines.append(
                f"| {r['family']} | {r['framework']} | {rate} | {label} | {_s(r['sequential'])} "
                f"| {_s(r['partial'])} | {_s(r[mode])} "
                f"| {'' if red is None else f'{red:.1f} %'} "
                f"| {r[f'{mode}_hits']} / {r[f'{mode}_started']} | {r[f'{mode}_wasted_s']:.1f} |")
    return "\n".join(lines) if len(lines) > 1 else ""


def plot_task(path: str | Path, title: str, runs: Sequence[TaskRecord]) -> Path:
    """Draw ``runs`` (one task, one per mode) to ``path``; return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    n_turns = max(len(r.turns) for r in runs)
    fig, axes = plt.subplots(len(runs), 1, sharex=True, squeeze=False,
                             figsize=(11, 1.1 + 0.42 * n_turns * len(runs)))
    for ax, run in zip(axes[:, 0], runs):
        for t in run.turns:
            y = -t.index
            ax.barh(y + 0.15, t.decode_end - t.start, left=t.start, height=0.4,
                    color="#4c72b0", label="decode" if t.index == 0 else None)
            for i, (_, s, e) in enumerate(t.spans):
                ax.barh(y - 0.22, max(e - s, 0.004), left=s, height=0.22, color="#dd8452",
                        alpha=0.75, label="tool work" if t.index == 0 and i == 0 else None)
        ax.axvline(run.latency_s, color="#222222", lw=1.2)
        if run.ideal_s is not None:
            ax.axvline(run.ideal_s, color="#55a868", lw=1.2, ls="--", label="summed bound")
        ax.set_yticks([-t.index for t in run.turns],
                      [f"turn {t.index + 1}" for t in run.turns], fontsize=7)
        ax.set_title(f"{run.mode}: {run.latency_s:.2f} s", fontsize=8, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds since the user's message")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
