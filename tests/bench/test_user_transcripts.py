"""``conveyor bench --transcripts FILE --tools MODULE:ATTR``: a user's messages and tools run in
every mode, the ideal where it is defined, and each misconfiguration a clear error before any
tool runs. Behaviour only: no timing thresholds (replayed fast, 2000 tokens/s)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor_integrations.bench.records import MODES
from conveyor_integrations.bench.report import markdown_table, summarize
from conveyor_integrations.bench.user_transcripts import (
    ToolsError,
    TranscriptError,
    UserBench,
    load_tools,
    load_transcripts,
    run_user_transcripts,
)
from conveyor_integrations.scheduler import Scheduler
from tests.bench.data import user_tools

TOOLS = "tests.bench.data.user_tools:TOOLS"
TRAILER = " Fetching the forecast and the conversion now; " * 8   # decoding goes on after calls


def _hermes(*calls: tuple[str, dict[str, Any]]) -> str:
    return "".join(f'<tool_call>{json.dumps({"name": n, "arguments": a})}</tool_call>\n'
                   for n, a in calls)


def _delta_call(index: int, call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "id": call_id, "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)}}]}


PARIS = {"name": "paris", "tools": ["weather", "convert"],
         "text": _hermes(("weather", {"city": "Paris"}), ("convert", {"celsius": 21})) + TRAILER}
OSLO = {"name": "oslo", "tools": ["spell", "convert"],
        "deltas": [{"role": "assistant", "content": "Spelling it first."},
                   _delta_call(0, "call_spell", "spell", {"word": "conveyor"}),
                   {"content": TRAILER},
                   _delta_call(1, "call_convert", "convert", {"celsius": -40}),
                   {"finish_reason": "tool_calls"}]}
SEARCH = {"tools": ["search"],
          "text": _hermes(("search", {"queries": ["pipelines", "decoding", "agents"]}))}


@pytest.fixture(autouse=True)
def counts(sched: Scheduler) -> Iterator[Any]:
    """Fresh counters, and a private default scheduler (``sched``) for every test."""
    user_tools.CALLS.clear()
    yield user_tools.CALLS
    user_tools.CALLS.clear()


def _write(tmp_path: Path, lines: list[Any]) -> Path:
    path = tmp_path / "messages.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


@pytest.fixture
async def bench(tmp_path: Path) -> UserBench:
    path = _write(tmp_path, ["# recorded by hand", PARIS, "", OSLO, SEARCH])
    return await run_user_transcripts(path, TOOLS, rates=[2000.0], runs=1)


def _one(bench: UserBench, transcript: str, mode: str) -> Any:
    (record,) = [r for r in bench.records if r.transcript == transcript and r.mode == mode]
    return record


def _span(record: Any, label: str) -> Any:
    (span,) = [s for s in record.tool_spans() if s.label == label]
    return span


async def test_every_mode_runs_each_message_and_the_results_agree(bench: UserBench) -> None:
    assert bench.problems == []
    names = ["paris", "oslo", "line 5"]           # line 5: no name, numbered as in the file
    assert [(r.transcript, r.mode) for r in bench.records] == [(n, m) for n in names
                                                               for m in MODES]
    assert {r.workload for r in bench.records} == {"transcripts"}
    assert all(r.rate == 2000.0 and r.backend == "replay" and r.run == 0 for r in bench.records)
    expected = {"paris": "Paris: sunny\n69.8 F", "oslo": "c-o-n-v-e-y-o-r\n-40 F",
                "line 5": "results for pipelines\nresults for decoding\nresults for agents"}
    for name in names:
        assert {_one(bench, name, m).result for m in MODES} == {expected[name]}


async def test_each_tool_body_runs_once_per_call_and_mode(bench: UserBench) -> None:
    # weather and spell: 1 call x 3 modes; convert: 2 messages x 3 modes; search runs whole in
    # sequential and complete_call and once per query (3) in partial
    assert dict(user_tools.CALLS) == {"weather": 3, "convert": 6, "spell": 3, "search": 5}


async def test_partial_starts_start_on_tools_while_decoding(bench: UserBench) -> None:
    for name, tool in (("paris", "weather"), ("oslo", "spell")):
        partial = _one(bench, name, "partial")
        assert _span(partial, tool).start < partial.decode_s
        sequential = _one(bench, name, "sequential")
        assert all(s.start >= sequential.decode_s for s in sequential.tool_spans())
        complete_call = _one(bench, name, "complete_call")
        assert _span(complete_call, tool).start < complete_call.decode_s
    paris = _one(bench, "paris", "partial")      # undecorated: it starts on its complete call,
    assert _span(paris, "convert").start < paris.decode_s   # here before the text after it


async def test_the_ideal_for_whole_call_tools_and_none_for_streamed_ones(bench: UserBench) -> None:
    for name in ("paris", "oslo"):
        partial = _one(bench, name, "partial")
        assert partial.ideal_s is not None and not partial.incomplete
        assert partial.ideal_s >= partial.decode_s
    streamed = _one(bench, "line 5", "partial")
    assert streamed.ideal_s is None and not streamed.incomplete
    assert all(r.ideal_s is None for r in bench.records if r.mode != "partial")
    notes = "\n".join(bench.notes)
    assert "line 5: no ideal, it calls search" in notes
    assert "tool search: items='queries'" in notes
    assert "tool convert: not decorated with partial_tool" in notes
    assert "tool weather: start_on=['city']" in notes
    (row,) = summarize(bench.records)
    assert row["workload"] == "transcripts" and set(row["latency_s"]) == {*MODES, "ideal"}
    assert "| transcripts | 2000 |" in markdown_table([row])


async def test_a_start_on_tool_that_runs_again_gets_a_note_and_no_ideal(
        tmp_path: Path) -> None:
    line = {"name": "three days", "tools": ["forecast"],     # days=3 is not the default: the
            "text": _hermes(("forecast", {"city": "Rome", "days": 3}))}   # early run is void
    bench = await run_user_transcripts(_write(tmp_path, [line]), TOOLS, rates=[2000.0])
    assert bench.problems == []
    assert {r.result for r in bench.records} == {"Rome: sunny for 3 days"}
    partial = _one(bench, "three days", "partial")
    assert partial.ideal_s is None and partial.incomplete
    assert any(n.startswith("three days: forecast ran again on its complete call")
               for n in bench.notes)


async def test_differing_results_and_failing_runs_are_problems_not_errors(
        tmp_path: Path) -> None:
    lines = [{"name": "tickets", "tools": ["ticket"], "text": _hermes(("ticket", {}))},
             {"name": "down", "tools": ["broken"], "text": _hermes(("broken", {}))},
             PARIS]
    bench = await run_user_transcripts(_write(tmp_path, lines), TOOLS, rates=[2000.0])
    assert "tickets @ 2000 tok/s run 0: the modes' tool results differ" in bench.problems
    assert "down @ 2000 tok/s run 0 partial: RuntimeError: the service is down" in bench.problems
    assert not [p for p in bench.problems if p.startswith("paris")]
    assert len([r for r in bench.records if r.transcript == "paris"]) == 3   # the rest ran
    assert user_tools.CALLS["ticket"] == 3 and user_tools.CALLS["broken"] == 3


async def test_a_factory_and_a_list_of_tool_objects_work_as_well(tmp_path: Path) -> None:
    path = _write(tmp_path, [PARIS])
    by_factory = await run_user_transcripts(path, "tests.bench.data.user_tools:make_tools",
                                            rates=[2000.0])
    by_list = await run_user_transcripts(path, user_tools.TOOLS, rates=[2000.0])
    assert by_factory.problems == by_list.problems == []
    assert len(by_factory.records) == len(by_list.records) == 3
    assert [t.name for t in load_tools(TOOLS)] == ["weather", "convert", "spell", "search",
                                                   "forecast", "ticket", "broken"]


BAD_LINES = [
    ("{not json", "not valid JSON"),
    ('["a list"]', "a line is a JSON object, not list"),
    ({"text": "hi", "deltas": [{"content": "hi"}], "tools": []}, "not both"),
    ({"tools": ["weather"]}, 'give either "text"'),
    ({"text": "", "tools": []}, '"text" must be a non-empty string'),
    ({"deltas": {"content": "x"}, "tools": []}, '"deltas" must be a non-empty list'),
    ({"deltas": ["x"], "tools": []}, '"deltas"[0] is str, not a delta object'),
    ({"text": "hi"}, '"tools" is missing'),
    ({"text": "hi", "tools": "weather"}, '"tools" must list the names'),
    ({"text": "hi", "tools": [], "tool": "x"}, "unknown keys ['tool']"),
    ({"text": "hi", "tools": [], "tool_format": "xml"}, "\"tool_format\" 'xml' is unknown"),
    ({"text": "hi", "tools": [], "name": 3}, '"name" must be a non-empty string'),
    ({"text": "hi", "tools": [], "name": "paris"}, "name 'paris' is also line 2's"),
    ({"text": '<tool_call>{"name": "weather", "arguments": {"city": </tool_call>',
      "tools": ["weather"]}, "call 0 (weather) is malformed"),
    ({"text": _hermes(("convert", {"celsius": 1})), "tools": ["weather"]},
     "call 0 calls 'convert', which is not in its \"tools\""),
    ({"text": "hi", "tools": ["nonesuch"]},
     "\"tools\" names 'nonesuch', which is not among the tools of tests.bench.data.user_tools"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES, ids=[m for _, m in BAD_LINES])
async def test_a_bad_line_is_an_error_naming_it_before_anything_runs(
        tmp_path: Path, line: Any, message: str) -> None:
    path = _write(tmp_path, ["# a comment", PARIS, "", line])       # the bad line is line 4
    with pytest.raises(TranscriptError) as caught:
        await run_user_transcripts(path, TOOLS, rates=[2000.0])
    assert caught.value.line == 4 and message in caught.value.reason
    assert str(caught.value).startswith(f"{path}:4: ")
    assert not user_tools.CALLS


def test_an_unreadable_or_empty_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TranscriptError, match="cannot read it"):
        load_transcripts(tmp_path / "missing.jsonl")
    with pytest.raises(TranscriptError, match="no recorded messages"):
        load_transcripts(_write(tmp_path, ["# nothing", ""]))


BAD_SPECS = [
    ("tests.bench.data.user_tools", "give MODULE:ATTR"),
    ("tests.bench.data.nonesuch:TOOLS", "no module named 'tests.bench.data.nonesuch'"),
    ("tests.bench.data.user_tools:MISSING", "has no attribute 'MISSING'"),
    ("tests.bench.data.user_tools:SINGLE_LC", "is one tool, not a list of them"),
    ("tests.bench.data.user_tools:SINGLE", "is a function of ['city']"),
    ("tests.bench.data.user_tools:needs_args", "is a function of ['prefix']"),
    ("tests.bench.data.user_tools:EMPTY", "must be a non-empty list of tools, not an empty one"),
    ("tests.bench.data.user_tools:CALLS", "must be a non-empty list of tools, not Counter"),
    ("tests.bench.data.user_tools:NOT_TOOLS", "NOT_TOOLS[1] is int, not a LangChain tool"),
    ("tests.bench.data.user_tools:TWICE", "[0] and [1] are both named 'convert'"),
    ("tests.bench.data.user_tools:LAMBDAS", "LAMBDAS[0] is a lambda"),
    ("tests.bench.data.user_tools:NO_DOCSTRING", "(undocumented) cannot be made a LangChain tool"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS, ids=[s for s, _ in BAD_SPECS])
async def test_a_bad_tools_spec_is_an_error_naming_it_before_anything_runs(
        tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(ToolsError) as caught:
        await run_user_transcripts(_write(tmp_path, [PARIS]), spec, rates=[2000.0])
    assert message in str(caught.value)
    assert spec.partition(":")[2] in str(caught.value) or ":" not in spec
    assert not user_tools.CALLS


async def test_the_documented_example_lines_load_and_run(tmp_path: Path) -> None:
    from conveyor_integrations.bench import user_transcripts

    doc = user_transcripts.__doc__ or ""
    lines = [line.strip() for line in doc.splitlines() if line.startswith('    {"name"')]
    assert len(lines) == 2
    path = _write(tmp_path, lines)
    assert [(t.name, t.tool_format, t.calls) for t in load_transcripts(path)] == [
        ("paris", "hermes", ("weather",)), ("oslo", "openai", ("weather",))]
    bench = await run_user_transcripts(
        path, "conveyor_integrations.bench.user_transcripts:example_tools", rates=[2000.0])
    assert bench.problems == [] and len(bench.records) == 6
    assert all(r.ideal_s is not None for r in bench.records if r.mode == "partial")


def test_the_command_writes_results_and_a_row_per_message(tmp_path: Path) -> None:
    from conveyor_integrations.bench import user_transcripts
    from conveyor_integrations.bench.cli import main

    doc = user_transcripts.__doc__ or ""
    path = _write(tmp_path, [line.strip() for line in doc.splitlines()
                             if line.startswith('    {"name"')])
    out = tmp_path / "out"
    tools = "conveyor_integrations.bench.user_transcripts:example_tools"
    code = main(["--transcripts", str(path), "--tools", tools, "--rates", "2000", "--runs", "1",
                 "--no-overhead", "--no-scale", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["workload"] for r in results["summary_per_message"]] == [
        "transcripts/paris", "transcripts/oslo"]
    assert "transcripts/paris" in (out / "summary.md").read_text()
    assert main(["--transcripts", str(path), "--tools", "no_such_module:X", "--out",
                 str(out)]) == 2                        # a clear error, nothing run


def test_transcripts_and_tools_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    from conveyor_integrations.bench.cli import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--transcripts", "x.jsonl"])
    assert "go together" in capsys.readouterr().err
