"""The benchmark: the pipeline bound, the summaries, and a small end-to-end run of every mode."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from conveyor_integrations.bench.cli import main, parse_args, run_bench
from conveyor_integrations.bench.programs import PROGRAMS
from conveyor_integrations.bench.records import MODES, RunRecord
from conveyor_integrations.bench.report import (
    markdown_table,
    overhead_table,
    scale_table,
    summarize,
)
from conveyor_integrations.bench.workload_base import Piece, ideal_latency


def test_ideal_chains_dependent_pieces_and_overlaps_independent_ones() -> None:
    chain = [Piece("a", 1.0, 0, 2.0), Piece("b", 1.5, 0, 1.0, deps=(0,)),
             Piece("c", 5.0, 0, 0.5, deps=(1,))]
    # f_a = 1 + 2 = 3; f_b = max(1.5, 3) + 1 = 4; f_c = max(5, 4) + 0.5 = 5.5
    assert ideal_latency(chain, decode_end=5.2) == pytest.approx(5.5)
    assert ideal_latency(chain, decode_end=9.0) == pytest.approx(9.0)     # decoding dominates
    both = [Piece("q1", 1.0, 0, 3.0), Piece("q2", 2.0, 0, 3.0)]           # concurrent queries
    assert ideal_latency(both, decode_end=2.5) == pytest.approx(5.0)
    assert ideal_latency(chain, decode_end=9.0, abort_at=1) == pytest.approx(4.0)


def _rec(mode: str, latency: float, ideal: float | None = None, rate: float = 50.0) -> RunRecord:
    return RunRecord("w", "t", mode, rate, "replay", latency_s=latency, decode_s=1.0, tokens=5,
                     ideal_s=ideal)


def test_summary_medians_reductions_and_ratio_to_ideal() -> None:
    runs = [_rec("sequential", x) for x in (4.0, 5.0, 9.0)]
    runs += [_rec("complete_call", x) for x in (4.0, 4.0, 4.0)]
    runs += [_rec("partial", x, ideal=x / 1.1) for x in (2.0, 2.5, 3.0)]
    (row,) = summarize(runs)
    assert row["latency_s"]["sequential"] == {"median": 5.0, "min": 4.0, "max": 9.0, "n": 3}
    assert row["reduction_pct"] == {"complete_call": 20.0, "partial": 50.0,
                                    "ideal": pytest.approx(54.5, abs=0.1)}
    assert row["ratio_to_ideal"] == pytest.approx(1.1)
    table = markdown_table([row])
    assert "| w | 50 |" in table and "50.0%" in table


def test_overhead_and_scale_tables() -> None:
    over = overhead_table([{"case": "hermes", "tokens": 900, "us_per_token": 6.0,
                            "share_at_50_tok_s": 6.0 * 50 / 1e6}])
    assert "| hermes | 900 | 6.00 | 0.030 % |" in over
    scale = scale_table([{"streams": 256, "tokens": 24000, "aggregate_tokens_per_s": 10800.4,
                          "dispatch_p50_ms": 0.151, "dispatch_p99_ms": 2.999,
                          "dispatch_max_ms": 7.4, "pieces": 2304, "lost": 0, "duplicated": 1}])
    assert "| 256 | 24000 | 10800 | 0.15 | 3.00 | 7.40 | 2304 | 0 | 1 |" in scale


def test_unknown_workload_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--workloads", "codegen,nope"])
    assert "unknown workloads ['nope']" in capsys.readouterr().err


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    import asyncio

    args = parse_args(["--workloads", "codegen,search,planning,validation,sql,calculator",
                       "--rates", "200", "--runs", "1", "--search-latency", "0.05"])
    return asyncio.run(run_bench(args))


def test_every_mode_runs_every_workload_and_they_agree(results: dict) -> None:
    records = [RunRecord(**r) for r in results["records"]]
    assert len(records) == 6 * len(MODES)
    by = {(r.workload, r.mode): r for r in records}
    for workload in ("codegen", "search", "planning", "sql", "calculator"):
        texts = {by[workload, m].result for m in MODES}
        assert len(texts) == 1, f"{workload}: the modes' tool results differ: {texts}"
        assert not any(by[workload, m].aborted for m in MODES)
    assert "saved portfolio_risk.png" in by["codegen", "partial"].result
    # validation: the partial run stops decoding at the invalid field; the others decode it all
    partial, seq = by["validation", "partial"], by["validation", "sequential"]
    assert partial.aborted and not seq.aborted
    assert partial.tokens < seq.tokens
    assert "email" in partial.result and "email" in seq.result


def test_partial_runs_have_pieces_and_an_ideal_below_their_latency(results: dict) -> None:
    for r in results["records"]:
        if r["mode"] != "partial":
            assert r["ideal_s"] is None
            continue
        assert r["ideal_s"] is not None and r["ideal_s"] <= r["latency_s"], r["workload"]
        tools = [s for s in r["spans"] if s["kind"] == "tool"]
        assert tools, r["workload"]
        assert all(s["start"] <= s["end"] for s in tools)
    pieces = {r["workload"]: len([s for s in r["spans"] if s["kind"] == "tool"])
              for r in results["records"] if r["mode"] == "partial"}
    # first transcripts: 3 queries, 6 plan steps, 3 SQL statements, 1 expression, and the
    # validation checks up to the invalid 2nd field (name, email)
    assert pieces["search"] == 3 and pieces["planning"] == 6 and pieces["sql"] == 3
    assert pieces["calculator"] == 1 and pieces["validation"] == 2
    statements = ast.parse(PROGRAMS["portfolio_risk"]).body
    assert pieces["codegen"] == len(statements)         # one per top-level statement
    assert not any(r["incomplete"] for r in results["records"])
    json.dumps(results)                                                   # all serialisable


def test_summary_has_one_row_per_workload(results: dict) -> None:
    rows = results["summary"]
    assert sorted(r["workload"] for r in rows) == sorted(
        ["codegen", "search", "planning", "validation", "sql", "calculator"])
    assert all(r["rate"] == 200.0 and "ratio_to_ideal" in r for r in rows)
    assert results["problems"] == []


def test_command_writes_json_markdown_and_timelines(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["--workloads", "calculator,validation", "--rates", "500", "--runs", "2",
                 "--search-latency", "0.01", "--no-scale", "--no-overhead",
                 "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert len(data["records"]) == 2 * 2 * len(MODES)
    assert "| calculator | 500 |" in (out / "summary.md").read_text()
    for name in ("calculator", "validation"):
        png = out / f"timeline_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
