"""Summaries of benchmark runs: per workload, rate and mode, the median latency (min-max), the
reduction against sequential and the ratio to the pipeline bound; as a rich table and markdown.

A cell's figures come from its runs (transcripts taken in turn, ``runs`` of them). ``ratio`` is
the median over runs of ``partial / ideal`` of the same run. Example::

    >>> from conveyor_integrations.bench.records import RunRecord
    >>> runs = [RunRecord("calc", "t", m, 50.0, "replay", latency_s=x, decode_s=1.0, tokens=9,
    ...                   ideal_s=1.0 if m == "partial" else None)
    ...         for m, x in [("sequential", 2.0), ("complete_call", 1.5), ("partial", 1.0)]]
    >>> row = summarize(runs)[0]
    >>> row["reduction_pct"]["partial"], row["ratio_to_ideal"]
    (50.0, 1.0)
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from .records import MODES, RunRecord

__all__ = ["markdown_table", "overhead_table", "rich_table", "scale_table", "summarize"]


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "n": len(values)}


def summarize(records: Iterable[RunRecord]) -> list[dict[str, Any]]:
    """One row per (backend, rate, workload): latency stats per mode, ideal, reduction, ratio."""
    cells: dict[tuple[str, float | None, str], list[RunRecord]] = {}
    for r in records:
        cells.setdefault((r.backend, r.rate, r.workload), []).append(r)
    rows = []
    for (backend, rate, workload), runs in cells.items():
        row: dict[str, Any] = {"backend": backend, "rate": rate, "workload": workload,
                               "latency_s": {}, "reduction_pct": {}}
        for mode in MODES:
            lat = [r.latency_s for r in runs if r.mode == mode]
            if lat:
                row["latency_s"][mode] = _stats(lat)
        partial = [r for r in runs if r.mode == "partial"]
        ideal = [r.ideal_s for r in partial if r.ideal_s is not None]
        if ideal:
            row["latency_s"]["ideal"] = _stats(ideal)
            ratios = [r.latency_s / r.ideal_s for r in partial if r.ideal_s]
            row["ratio_to_ideal"] = round(statistics.median(ratios), 4)
        seq = row["latency_s"].get("sequential")
        for mode in ("complete_call", "partial", "ideal"):
            if seq and mode in row["latency_s"]:
                row["reduction_pct"][mode] = round(
                    100 * (1 - row["latency_s"][mode]["median"] / seq["median"]), 1)
        row["decode_s"] = round(statistics.median(r.decode_s for r in runs
                                                  if r.mode == "sequential") if seq else 0.0, 4)
        row["aborted_runs"] = sum(r.aborted for r in partial)
        row["transcripts"] = sorted({r.transcript for r in runs})
        rows.append(row)
    return rows


def _rate(rate: float | None) -> str:
    return "engine" if rate is None else f"{rate:g}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}%"


def _cells(row: dict[str, Any]) -> list[str]:
    lat, red = row["latency_s"], row["reduction_pct"]

    def fmt(mode: str) -> str:
        s = lat.get(mode)
        return "" if s is None else f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"

    ratio = row.get("ratio_to_ideal")
    return [row["workload"], _rate(row["rate"]), f"{row['decode_s']:.2f}", fmt("sequential"),
            fmt("complete_call"), fmt("partial"), fmt("ideal"),
            _pct(red.get("complete_call")), _pct(red.get("partial")),
            "" if ratio is None else f"{ratio:.3f}"]


HEADERS = ["workload", "tok/s", "decode s", "sequential s", "complete-call s", "partial s",
           "ideal s", "cc vs seq", "partial vs seq", "partial/ideal"]


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as a markdown table (medians, min-max in parentheses)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def rich_table(rows: Sequence[dict[str, Any]], title: str) -> Any:
    """The summary as a ``rich.table.Table``."""
    from rich.table import Table

    table = Table(title=title)
    for h in HEADERS:
        table.add_column(h, justify="left" if h == "workload" else "right")
    for r in rows:
        table.add_row(*_cells(r))
    return table


def overhead_table(rows: Sequence[dict[str, Any]]) -> str:
    """The library's CPU cost per token (rows of ``measure_overhead``) as markdown."""
    lines = ["| case | tokens | µs per token | share of decode at 50 tok/s |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['tokens']} | {r['us_per_token']:.2f} | "
              f"{100 * r['share_at_50_tok_s']:.3f} % |" for r in rows]
    return "\n".join(lines)


def scale_table(rows: Sequence[dict[str, Any]]) -> str:
    """Concurrent streams through one scheduler (rows of ``measure_scale``) as markdown."""
    head = ("| streams | tokens | aggregate tok/s | dispatch p50 ms | p99 ms | max ms | pieces "
            "| lost | duplicated |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['streams']} | {r['tokens']} | {r['aggregate_tokens_per_s']:.0f} | "
              f"{r['dispatch_p50_ms']:.2f} | {r['dispatch_p99_ms']:.2f} | "
              f"{r['dispatch_max_ms']:.2f} | {r['pieces']} | {r['lost']} | {r['duplicated']} |"
              for r in rows]
    return "\n".join(lines)
