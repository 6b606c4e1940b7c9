"""What one run of a whole agent task records: its time, and each turn's decode, tools and gap.

All times are seconds since the agent was invoked. A turn runs from its request (``start``) to
the next turn's request (``next_start``; the answer's turn to the end of the task): decoding
until ``decode_end``, the tools until ``tools_end`` (the end of the last piece of tool work;
``decode_end`` when there was none), and the rest is the gap: the agent framework handing
the results over and building the next request. Example::

    >>> turn = TurnRecord(0, start=0.01, first_token_s=0.02, decode_end=2.0, tools_end=2.5,
    ...                   next_start=2.52, tokens=80)
    >>> round(turn.decode_s, 2), round(turn.tool_tail_s, 2), round(turn.gap_s, 2)
    (1.99, 0.5, 0.02)
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["TaskRecord", "TurnRecord", "summarize_tasks"]


@dataclass
class TurnRecord:
    """One model turn of a task run and the tools it called."""

    index: int
    start: float
    first_token_s: float | None
    """From the request to the first delta (the prefill, on a real engine)."""
    decode_end: float
    tools_end: float
    next_start: float
    tokens: int
    """Deltas decoded."""
    calls: list[str] = field(default_factory=list)
    """The tools the turn called, in order."""
    work_expected: dict[str, int] = field(default_factory=dict)
    """The units of tool work its calls asked for (queries, URLs, programs, plan steps)."""
    work_done: dict[str, int] = field(default_factory=dict)
    """The units of tool work that ran (equal to ``work_expected``: each exactly once)."""
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    """Prompt tokens the engine found in its prefix cache (real engine only)."""
    spans: list[tuple[str, float, float]] = field(default_factory=list)
    """The tool work: ``(label, start, end)``."""
    ideal_s: float | None = None
    """The turn's pipeline bound from its request (partial runs whose pieces all ran early)."""

    @property
    def decode_s(self) -> float:
        return self.decode_end - self.start

    @property
    def tool_tail_s(self) -> float:
        """Tool time left after decoding ended."""
        return max(0.0, self.tools_end - self.decode_end)

    @property
    def gap_s(self) -> float:
        """From the last tool result (or the end of decoding) to the next request."""
        return max(0.0, self.next_start - max(self.decode_end, self.tools_end))


@dataclass
class TaskRecord:
    """One run of one task in one mode, framework and backend."""

    family: str
    task: str
    mode: str
    framework: str
    rate: float | None
    """Replay tokens/s; None on the real engine."""
    backend: str
    latency_s: float
    """From invoking the agent to its final answer."""
    run: int = 0
    answer: str = ""
    results: list[str] = field(default_factory=list)
    """The tool results the agent got, in order."""
    turns: list[TurnRecord] = field(default_factory=list)
    ideal_s: float | None = None
    """The sum of the turns' pipeline bounds (partial runs)."""
    variant: str = ""
    """A label for runs of one mode under other conditions (e.g. ``no prefix cache``)."""
    speculation: dict[str, Any] = field(default_factory=dict)
    """Speculative mode: started, hits, misses, refused and wasted tool seconds of the task."""

    def once_each(self) -> bool:
        """Every call's work ran exactly once."""
        return all(t.work_expected == t.work_done for t in self.turns)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable, with each turn's decode, tool tail and gap."""
        d = asdict(self)
        for turn, t in zip(d["turns"], self.turns):
            turn.update(decode_s=round(t.decode_s, 6), tool_tail_s=round(t.tool_tail_s, 6),
                        gap_s=round(t.gap_s, 6))
        return d


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize_tasks(records: list[TaskRecord]) -> list[dict[str, Any]]:
    """One row per family, framework, rate and variant: the median task time of each mode,
    partial's reduction against sequential, and the median ratio of partial to its summed
    bound; on a real engine also the median first-token time and cached prompt tokens.

        >>> r = [TaskRecord("sql", "t", m, "langchain", 50.0, "replay", s, ideal_s=i)
        ...      for m, s, i in (("sequential", 10.0, None), ("complete_call", 9.0, None),
        ...                      ("partial", 8.0, 7.9))]
        >>> row = summarize_tasks(r)[0]
        >>> row["reduction_pct"], round(row["ratio_to_bound"], 3)
        (20.0, 1.013)
    """
    rows = []
    keys = dict.fromkeys((r.family, r.framework, r.rate, r.backend, r.variant) for r in records)
    for family, framework, rate, backend, variant in keys:
        cell = [r for r in records if (r.family, r.framework, r.rate, r.backend, r.variant)
                == (family, framework, rate, backend, variant)]
        row: dict[str, Any] = {"family": family, "framework": framework, "rate": rate,
                               "backend": backend, "variant": variant,
                               "tasks": len({r.task for r in cell}),
                               "turns": _median([float(len(r.turns)) for r in cell])}
        for mode in ("sequential", "complete_call", "partial"):
            row[mode] = _median([r.latency_s for r in cell if r.mode == mode])
        if row["sequential"] and row["partial"] is not None:
            row["reduction_pct"] = round(100 * (1 - row["partial"] / row["sequential"]), 1)
        ratios = [r.latency_s / r.ideal_s for r in cell if r.mode == "partial" and r.ideal_s]
        row["ratio_to_bound"] = _median(ratios)
        firsts = [t.first_token_s for r in cell for t in r.turns[1:] if t.first_token_s]
        cached = [float(t.cached_tokens) for r in cell for t in r.turns[1:]
                  if t.cached_tokens is not None]
        prompts = [float(t.prompt_tokens) for r in cell for t in r.turns[1:]
                   if t.prompt_tokens is not None]
        for mode in ("speculative", "learned"):
            spec = [r for r in cell if r.mode == mode]
            if not spec:
                continue
            row[mode] = _median([r.latency_s for r in spec])
            if row["sequential"] and row[mode] is not None:
                row[f"{mode}_reduction_pct"] = round(100 * (1 - row[mode] / row["sequential"]), 1)
            row[f"{mode}_started"] = sum(r.speculation.get("started", 0) for r in spec)
            row[f"{mode}_hits"] = sum(r.speculation.get("hits", 0) for r in spec)
            row[f"{mode}_wasted_s"] = _median([float(r.speculation.get("wasted_s", 0.0))
                                               for r in spec])
        row["next_turn_first_token_s"] = _median(firsts)
        row["next_turn_cached_tokens"] = _median(cached)
        row["next_turn_prompt_tokens"] = _median(prompts)
        rows.append(row)
    return rows
