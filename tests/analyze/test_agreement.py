"""``conveyor analyze`` agrees with the benchmark: one agent run, recorded as a LangSmith export,
as OTLP JSON and as a chat log (see :mod:`agree_record`), is analyzed with the decorated tools;
each message's estimated saving (complete-call dispatch, partial execution) is compared with
what ``run_user_transcripts`` measures on the same messages, at the same rate, with the same
tools (three runs of each mode).

The allowance is the measured run-to-run spread plus 0.15 s: an OTLP span keeps the final
message but no chunk times, so its message is decoded evenly over the span, without the call
markup the model also decoded (about 0.14 s early on the line-streamed message here)."""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_openai")
pytest.importorskip("opentelemetry.sdk")

import agree_tools as at
from agree_record import record

from conveyor_integrations.analyze.cli import main
from conveyor_integrations.bench.user_transcripts import run_user_transcripts

ALLOWANCE_S = 0.15
MODES = ("complete_call", "partial")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("recorded")
    paths, messages = asyncio.run(record([at.SEARCH, at.SCRIPT, at.ANSWER], at.RATE,
                                         at.plain_tools(), folder))
    assert messages[-1].content == at.ANSWER          # the agent ran to its answer
    assert [m.name for m in messages if m.type == "tool"] == ["web_search", "save_note",
                                                              "run_lines"]
    return paths


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], list[float]]:
    path = at.write_transcripts(tmp_path_factory.mktemp("bench") / "messages.jsonl")
    bench = asyncio.run(run_user_transcripts(path, at.TOOLS(), rates=[at.RATE], runs=3))
    assert bench.problems == []
    out: dict[tuple[str, str], list[float]] = {}
    for r in sorted(bench.records, key=lambda r: r.run):
        out.setdefault((r.transcript, r.mode), []).append(r.latency_s)
    return out


def _analysis(trace: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert main([str(trace), "--tools", "agree_tools:TOOLS", "--out", str(out)]) == 0
    data: dict[str, Any] = json.loads((out / "analysis.json").read_text())
    return data


@pytest.mark.parametrize("kind", ["langsmith", "otlp", "chatlog"])
def test_estimated_savings_agree_with_the_benchmark(
        kind: str, recorded: dict[str, Path], measured: dict[tuple[str, str], list[float]],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _analysis(recorded[kind], tmp_path, monkeypatch)
    (est,) = data["estimates"]
    assert est["source"] == kind and len(est["turns"]) == 3
    search, script, answer = est["turns"]
    assert [(c["name"], c["strategy"]) for c in search["calls"]] == [
        ("web_search", "start on query (from its partial_tool)"),
        ("save_note", "on its complete call (not decorated)")]
    assert [(c["name"], c["pieces"]) for c in script["calls"]] == [("run_lines", 5)]
    assert answer["calls"] == []
    assert search["calls"][0]["tool_s"] >= at.SEARCH_S
    for turn, name in ((search, "search"), (script, "script")):
        seq = measured[(name, "sequential")]
        for mode in MODES:
            per_run = [a - b for a, b in zip(seq, measured[(name, mode)], strict=True)]
            saved = statistics.median(seq) - statistics.median(measured[(name, mode)])
            estimate = turn["recorded_end"] - turn["ends"][mode]
            allowed = max(per_run) - min(per_run) + ALLOWANCE_S
            assert abs(estimate - saved) <= allowed, (
                f"{kind} {name} {mode}: estimated {estimate:.3f} s saved, the benchmark "
                f"measured {saved:.3f} s (runs {[round(x, 3) for x in per_run]})")
    total = sum(t["recorded_end"] - t["ends"]["partial"] for t in est["turns"])
    assert est["saved"]["partial"] == pytest.approx(total, abs=0.02)
    assert data["summary"].startswith("on 1 run: median task")
    assert len(data["plots"]) == 1 and Path(data["plots"][0]).stat().st_size > 0
