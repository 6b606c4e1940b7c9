"""Whole agent tasks: every family in every mode, through LangChain and LlamaIndex, over Replay.

The agents are real (``create_agent`` and ``FunctionAgent``), and so are the tools (the sandboxed
Python worker, SQLite, HTTP to a local server). What must hold in every mode: the same final
answer and the same tool results, every call's work run exactly once, every recorded turn
decoded; and in partial mode tool work starting before its turn's decoding ended, with a summed
bound no later than the measured task.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain")
pytest.importorskip("llama_index.core")

from conveyor_integrations.bench.cli import main, parse_args
from conveyor_integrations.bench.records import MODES
from conveyor_integrations.bench.task_bench import run_tasks, task_problems
from conveyor_integrations.bench.task_records import TaskRecord, TurnRecord
from conveyor_integrations.bench.tasks import FAMILIES


def _args(frameworks: str, runs: int) -> argparse.Namespace:
    args = parse_args(["--tasks", "--frameworks", frameworks, "--rates", "1000",
                       "--runs", str(runs), "--search-latency", "0.05"])
    args.shop_orders = 20_000
    return args


def _records(results: dict[str, Any]) -> list[TaskRecord]:
    derived = ("decode_s", "tool_tail_s", "gap_s")
    return [TaskRecord(**{**r, "turns": [TurnRecord(**{k: v for k, v in t.items()
                                                        if k not in derived})
                                         for t in r["turns"]]}) for r in results["records"]]


@pytest.fixture(scope="module")
def runs() -> tuple[dict[str, Any], list[TaskRecord]]:
    """Every task of every family through LangChain, and the first of each through LlamaIndex."""
    lc = asyncio.run(run_tasks(_args("langchain", 3)))
    li = asyncio.run(run_tasks(_args("llamaindex", 1)))
    results = {"problems": lc["problems"] + li["problems"],
               "records": lc["records"] + li["records"]}
    return results, _records(results)


def test_every_family_runs_in_every_mode_with_the_same_answers_and_results(
        runs: tuple[dict[str, Any], list[TaskRecord]]) -> None:
    results, records = runs
    assert results["problems"] == []
    for family in FAMILIES.values():
        for framework, tasks in (("langchain", family.tasks), ("llamaindex", family.tasks[:1])):
            for task in tasks:
                got = {r.mode: r for r in records if (r.family, r.task, r.framework)
                       == (family.name, task.name, framework)}
                assert set(got) == set(MODES), (family.name, task.name, framework)
                assert task_problems(got) == []
                for r in got.values():
                    assert r.answer.strip() == task.turns[-1].strip()
                    assert len(r.turns) == len(task.turns)       # every recorded turn decoded
                    calls = sum(len(t.calls) for t in r.turns)
                    assert len(r.results) == calls, (r.mode, r.results)


def test_every_calls_work_runs_exactly_once(runs: tuple[dict[str, Any], list[TaskRecord]]
                                            ) -> None:
    _, records = runs
    for r in records:
        for t in r.turns:
            assert t.work_done == t.work_expected, (r.family, r.task, r.mode, t.index)
            assert bool(t.calls) == (t.index < len(r.turns) - 1)   # the answer calls nothing


def test_partial_starts_tools_while_decoding_and_stays_above_its_bound(
        runs: tuple[dict[str, Any], list[TaskRecord]]) -> None:
    _, records = runs
    for family in FAMILIES:
        partial = [r for r in records if r.family == family and r.mode == "partial"]
        assert partial
        early = [s for r in partial for t in r.turns for s in t.spans if s[1] < t.decode_end]
        assert early, family                       # some tool work began before decoding ended
        for r in partial:
            assert r.ideal_s is not None and r.ideal_s <= r.latency_s, (r.family, r.task)
            assert all(t.ideal_s is not None for t in r.turns)
    for r in records:
        if r.mode != "partial":
            assert r.ideal_s is None


def test_unknown_family_or_framework_is_a_clear_error(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    for flag, value in (("--families", "poetry"), ("--frameworks", "autogen")):
        with pytest.raises(SystemExit):
            parse_args(["--tasks", flag, value])
        assert value in capsys.readouterr().err


def test_command_writes_tasks_json_markdown_and_timelines(tmp_path: Path) -> None:
    code = main(["--tasks", "--families", "planner", "--frameworks", "langchain", "--rates",
                 "1000", "--runs", "1", "--search-latency", "0.05", "--out", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "tasks.json").read_text())
    assert [row["family"] for row in results["summary"]] == ["planner"]
    assert {r["mode"] for r in results["records"]} == set(MODES)
    turn = results["records"][0]["turns"][0]
    assert {"decode_s", "tool_tail_s", "gap_s", "first_token_s"} <= set(turn)
    assert "| planner | langchain | 1000 tok/s |" in (tmp_path / "tasks.md").read_text()
    assert (tmp_path / "task_planner_langchain.png").stat().st_size > 10_000


def test_speculative_mode_gives_the_same_answers_with_hits_and_each_call_once() -> None:
    """Research with ``--speculative``: web_search's follow-up fetches every result; the fetches
    the model writes take those runs (hits), the rest are counted as misses, and the answers,
    the tool results and the work of each call are those of the other modes."""
    args = _args("langchain", 3)
    args.families, args.speculative = "research", True
    results = asyncio.run(run_tasks(args))
    assert results["problems"] == []
    records = _records(results)
    speculative = [r for r in records if r.mode == "speculative"]
    assert len(speculative) == 3
    for r in speculative:
        s = r.speculation
        assert s["hits"] > 0 and s["hits"] + s["misses"] == s["started"]
        assert s["wasted_s"] > 0                        # the pages nobody fetched ran anyway
        for t in r.turns:
            assert t.work_done == t.work_expected
    row = results["summary"][0]
    assert row["speculative_hits"] == sum(r.speculation["hits"] for r in speculative)
