"""This library's own ``results.json`` (``conveyor bench``) as recorded runs.

Each ``sequential`` record of a built-in workload becomes one run of one turn: the workload's
transcript decoded at the record's token rate in its measured decode time, and the tool work
the record timed after it. The tools' strategies are the workload's own ``partial_tool``
options, so the estimate can be set beside the record's measured ``partial`` run and its
``ideal`` (what ``conveyor analyze`` reports for each run as ``measured``). Records of
``--transcripts`` runs (the user's file is not in ``results.json``) and of ``--tasks`` runs
are left out with a note. Example::

    >>> runs, notes = runs_of_results({"records": [{"workload": "calculator",
    ...     "transcript": "tip", "mode": "sequential", "rate": 50.0, "backend": "replay",
    ...     "latency_s": 1.3, "decode_s": 1.2, "tokens": 30, "run": 0, "spans": [
    ...     {"label": "decode", "start": 0.0, "end": 1.2, "kind": "decode"},
    ...     {"label": "x", "start": 1.2, "end": 1.3, "kind": "tool"}]}]})
    >>> [(r.name, r.turns[0].tools[0].name) for r in runs]
    [('calculator/tip@50 #0', 'calculate')]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .model import RecordedRun, RecordedTool, RecordedTurn
from .strategy import Strategy

__all__ = ["runs_of_results"]


def _strategy(options: dict[str, Any], decorated: bool) -> Strategy:
    if not decorated or options.get("side_effects"):
        return Strategy("complete", source="tools")
    if options.get("stream"):
        unit = "statement" if options.get("unit") == "statement" else "line"
        return Strategy("stream", (options["stream"],), unit, "tools")
    if options.get("items"):
        return Strategy("items", (options["items"],), source="tools")
    if options.get("execution") is not None:
        return Strategy("complete", source="tools")
    return Strategy("start_on", tuple(options.get("start_on") or ()), source="tools")


def _workload_strategies(workload: Any) -> dict[str, Strategy]:
    from ..bench.workload_base import Env, Trace

    parts = workload.parts(Env("http://127.0.0.1:9", Path("unused.db"), Path(".")), Trace())
    return {p.name: _strategy(p.strategy, p.decorated) for p in parts}


def _calls(text: str) -> list[str]:
    from ..events import CallDone
    from ..parsing import get_parser

    parser = get_parser("hermes")
    events = parser.feed(text) + parser.close()
    return [ev.name for ev in events if isinstance(ev, CallDone)]


def runs_of_results(data: dict[str, Any], origin: str = "results.json"
                    ) -> tuple[list[RecordedRun], list[str]]:
    """The sequential runs of ``data`` (a loaded ``results.json``) and notes on what was left
    out. Each run's ``measured`` holds its cell's measured partial latency and ideal."""
    from ..bench.workloads import WORKLOADS

    records = data.get("records")
    if not isinstance(records, list):
        raise ValueError(  # noqa: TRY004 - a file of the wrong kind, reported as such
            f"{origin}: no 'records' list: not a results.json of conveyor bench")
    notes: list[str] = []
    measured: dict[tuple[Any, ...], dict[str, float]] = {}
    for r in records:
        key = (r.get("workload"), r.get("transcript"), r.get("rate"), r.get("run"))
        if r.get("mode") in ("partial", "complete_call"):
            cell = measured.setdefault(key, {})
            cell[r["mode"]] = float(r["latency_s"])
            if r.get("ideal_s") is not None:
                cell["ideal"] = float(r["ideal_s"])
    runs: list[RecordedRun] = []
    skipped: set[str] = set()
    for r in records:
        if r.get("mode") != "sequential":
            continue
        workload = WORKLOADS.get(str(r.get("workload")))
        text = workload.transcripts.get(str(r.get("transcript"))) if workload else None
        if workload is None or text is None:
            skipped.add(str(r.get("workload")))
            continue
        strategies = _workload_strategies(workload)
        calls = _calls(text)
        traced = [c for c in calls if strategies.get(c) != Strategy("complete", source="tools")]
        if len(traced) == 1:          # the untraced (undecorated) calls take no time here
            calls = traced
        spans = [s for s in r.get("spans", []) if s.get("kind") == "tool"]
        decode_s = float(r["decode_s"])
        if len(calls) == 1 and spans:
            ordered = sorted(spans, key=lambda s: s["start"])
            tools = [RecordedTool(calls[0], ordered[0]["start"], max(s["end"] for s in spans),
                                  piece_s=[s["end"] - s["start"] for s in ordered]
                                  if len(spans) > 1 else None)]
        elif len(calls) == len(spans):
            tools = [RecordedTool(name, s["start"], s["end"])
                     for name, s in zip(calls, sorted(spans, key=lambda s: s["start"]))]
        else:
            notes.append(f"{origin}: {r['workload']}/{r['transcript']}: {len(calls)} calls "
                         f"and {len(spans)} timed pieces of tool work cannot be paired; left out")
            continue
        rate = r.get("rate")
        turn = RecordedTurn(0.0, decode_s, text=text, tool_format="hermes",
                            output_tokens=int(r.get("tokens") or 0) or None, tools=tools)
        name = f"{r['workload']}/{r['transcript']}@{rate:g} #{r.get('run', 0)}" if rate \
            else f"{r['workload']}/{r['transcript']} #{r.get('run', 0)}"
        runs.append(RecordedRun(name, "results", [turn], origin_note=origin,
                                strategies=strategies,
                                measured=dict(measured.get((r.get("workload"),
                                                            r.get("transcript"), rate,
                                                            r.get("run")), {}))))
    if skipped:
        notes.append(f"{origin}: records of {sorted(skipped)} are not built-in workloads "
                     "(--transcripts or --tasks runs): left out")
    return runs, notes
