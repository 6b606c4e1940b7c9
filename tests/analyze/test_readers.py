"""``read_traces``: each file's kind chosen by its content; bad input is a TraceError that names
the file (and line or record) and the problem, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conveyor_integrations.analyze.readers import KINDS, TraceError, kind_of, read_traces

LLM = {"id": "a", "name": "ChatOpenAI", "run_type": "llm", "start_time": "2025-01-01T00:00:00Z",
       "end_time": "2025-01-01T00:00:01Z",
       "outputs": {"generations": [[{"text": "hi", "message": {"content": "hi"}}]]}}
SPANS = {"resourceSpans": [{"scopeSpans": [{"spans": [
    {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "chat", "startTimeUnixNano": "0",
     "endTimeUnixNano": "1000000000",
     "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}]}]}]}]}
CHAT = {"request": {"model": "m"}, "started": 0.0, "ended": 1.0,
        "response": {"choices": [{"message": {"content": "hi"}}]}}
RESULTS = {"records": [{"workload": "calculator", "transcript": "tip", "mode": "sequential",
                        "rate": 50.0, "backend": "replay", "latency_s": 1.3, "decode_s": 1.2,
                        "tokens": 30, "run": 0, "spans": [
                            {"label": "decode", "start": 0.0, "end": 1.2, "kind": "decode"},
                            {"label": "x", "start": 1.2, "end": 1.3, "kind": "tool"}]},
                       {"workload": "mine", "transcript": "t", "mode": "sequential"}]}


def _write(path: Path, body: Any, lines: bool = False) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in body) if lines else json.dumps(body))
    return path


@pytest.mark.parametrize(("body", "lines", "source"), [
    (LLM, False, "langsmith"), ([LLM], False, "langsmith"), ({"runs": [LLM]}, False, "langsmith"),
    ([LLM], True, "langsmith"), (SPANS, False, "otlp"), ([SPANS], True, "otlp"),
    ([CHAT], True, "chatlog"), ([CHAT], False, "chatlog"),
])
def test_kind_by_content(tmp_path: Path, body: Any, lines: bool, source: str) -> None:
    (run,) = read_traces([_write(tmp_path / "trace", body, lines)])
    assert run.source == source and len(run.turns) == 1
    assert run.turns[0].end - run.turns[0].start == 1.0


def test_results_json_goes_to_its_reader_with_notes(tmp_path: Path) -> None:
    notes: list[str] = []
    (run,) = read_traces([_write(tmp_path / "results.json", RESULTS)], notes=notes)
    assert run.source == "results" and run.turns[0].tools[0].name == "calculate"
    assert any("['mine']" in n for n in notes)


def test_several_files_in_order(tmp_path: Path) -> None:
    runs = read_traces([_write(tmp_path / "a.json", SPANS), _write(tmp_path / "b.jsonl", [CHAT],
                                                                     True)])
    assert [r.source for r in runs] == ["otlp", "chatlog"]
    assert runs[1].name == "b"                       # no "run": named by the file


def test_kind_of_and_kinds() -> None:
    assert KINDS == ("auto", "langsmith", "otlp", "chatlog", "results")
    assert [kind_of(x) for x in (LLM, SPANS, CHAT, RESULTS, {"x": 1}, 3)] == [
        "langsmith", "otlp", "chatlog", "results", None, None]


@pytest.mark.parametrize(("content", "kind", "problem"), [
    ("", "auto", "empty file"),
    ("[]", "auto", "an empty JSON list"),
    ('{"a": 1,\n "b": }', "auto", "not JSON (Expecting value at line 2, column 7) nor JSON lines"),
    (json.dumps(CHAT) + "\n{oops\n", "auto", "line 2: not JSON"),
    (json.dumps({"hello": 1}), "auto", ("the file: not a trace this reads: expected a LangSmith "
                                       "run export, OTLP JSON spans, a chat-completion log or "
                                       "conveyor bench's results.json (found keys hello)")),
    ("[1, 2]", "auto", "record 1: not a trace this reads"),
    (json.dumps(CHAT) + "\n" + json.dumps(SPANS) + "\n", "auto",
     "line 2: otlp among chatlog records; one kind per file"),
    (json.dumps(LLM), "otlp", ("the file: not OTLP JSON (an object with resourceSpans), as --kind "
                              "otlp says (it looks like langsmith)")),
    (json.dumps([LLM, {"name": "x"}]), "auto",
     "record 2: not a LangSmith run (an object with run_type)"),
    (json.dumps([LLM, {**LLM, "id": "b", "start_time": "yesterday"}]), "auto",
     "record 2: run 'ChatOpenAI': start_time 'yesterday' is not an ISO 8601 time"),
    (json.dumps({**LLM, "child_runs": [{"run_type": "tool", "name": "t", "id": "c"}]}), "auto",
     "child 1 of 'ChatOpenAI': run 't' has no start_time"),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]}), "auto",
     "resourceSpans[0].scopeSpans[0].spans[0]: not a span (no traceId)"),
    (json.dumps({"records": "none"}), "auto", "not a results.json this reads"),
    (json.dumps(LLM), "results", ("not conveyor bench's results.json (an object with records), "
                                 "as --kind results says (it looks like langsmith)")),
    (json.dumps({"hello": 1}), "results", ("not a results.json this reads (ValueError: no "
                                          "'records' list")),
])
def test_bad_input_is_a_trace_error(tmp_path: Path, content: str, kind: str,
                                    problem: str) -> None:
    path = tmp_path / "trace.json"
    path.write_text(content)
    with pytest.raises(TraceError) as err:
        read_traces([path], kind=kind)
    assert err.value.path == str(path) and str(err.value).startswith(f"{path}: ")
    assert problem in err.value.reason


def test_missing_file_directory_binary_and_unknown_kind(tmp_path: Path) -> None:
    for path, problem in [(tmp_path / "nope.json", "no such file"),
                          (tmp_path, "is a directory"),
                          (tmp_path / "bin", "not UTF-8 text")]:
        if path.name == "bin":
            path.write_bytes(b"\xff\xfe\x00")
        with pytest.raises(TraceError, match=problem):
            read_traces([path])
    with pytest.raises(ValueError, match="unknown trace kind 'zipkin'"):
        read_traces([tmp_path / "x"], kind="zipkin")


def _paths(obj: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    inner = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(
        obj, list) else ()
    return [at] * bool(at) + [p for k, v in inner for p in _paths(v, (*at, k))]


@pytest.mark.parametrize("body", [
    [{**LLM, "child_runs": [{**LLM, "id": "t", "run_type": "tool", "name": "f",
                             "extra": {"tool_call_id": "c1"}, "error": None}],
      "events": [{"name": "new_token", "time": LLM["start_time"],
                  "kwargs": {"token": "", "chunk": {"message": {"content": "h",
                             "tool_call_chunks": [{"name": "f", "args": "{}", "index": 0}]}}}}]}],
    [SPANS], [CHAT, {**CHAT, "chunks": [{"t": 0.5, "chunk": {"choices": [{"delta": {
        "tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]}}]}}],
                     "tool_results": [{"name": "f", "started": 1, "ended": 2}]}],
], ids=["langsmith", "otlp", "chatlog"])
def test_mutated_traces_raise_only_trace_errors(tmp_path: Path, body: list[Any]) -> None:
    """Any field of a good trace replaced by junk: a TraceError or runs, never another error."""
    import copy
    import random

    from conveyor_integrations.analyze.estimate import estimate_run

    rng = random.Random(7)
    junk = [None, 0, -1, 2.5, "x", "", [], {}, [None], {"a": 1}, True, "2025-01-01T00:00:00Z"]
    path = tmp_path / "trace.jsonl"
    for _ in range(300):
        trace = copy.deepcopy(body)
        for _ in range(rng.randint(1, 3)):
            *up, last = rng.choice(_paths(trace))
            target = trace
            for k in up:
                target = target[k]
            target[last] = copy.deepcopy(rng.choice(junk))
        _write(path, trace, lines=True)
        try:
            runs = read_traces([path])
        except TraceError:
            continue
        for run in runs:
            estimate_run(run)
