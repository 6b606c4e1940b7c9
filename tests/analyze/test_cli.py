"""``conveyor analyze`` on the command line: what it writes, and a clear error (exit 2) for a
trace or an option it cannot use, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor_integrations.cli import main

T = 1_718_000_000.0
CALL = ('<tool_call>{"name": "web_search", "arguments": {"query": "weather in Paris"}}'
        '</tool_call> then a little text.')


def _chatlog(path: Path) -> Path:
    """One streamed turn (hermes text, one character per 20 ms) and its tool run."""
    chunks = [{"t": T + 0.02 * (i + 1), "chunk": {"choices": [{"index": 0,
                                                              "delta": {"content": ch}}]}}
              for i, ch in enumerate(CALL)]
    end = chunks[-1]["t"]
    line = {"run": "r1", "request": {"model": "m"}, "started": T, "chunks": chunks,
            "tool_results": [{"name": "web_search", "started": end + 0.05, "ended": end + 1.05}]}
    path.write_text(json.dumps(line) + "\n")
    return path


def test_writes_the_analysis_and_a_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    trace = _chatlog(tmp_path / "log.jsonl")
    out = tmp_path / "out"
    assert main(["analyze", str(trace), "--strategy", "web_search=start_on:query",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "on 1 run: median task" in printed and "partial execution would save" in printed
    data = json.loads((out / "analysis.json").read_text())
    assert data["strategies"] == {"web_search": "start on query (given)"}
    (est,) = data["estimates"]
    (call,) = est["turns"][0]["calls"]
    query_final = T + 0.02 * (CALL.index('"weather in Paris"') + len('"weather in Paris"'))
    assert call["name"] == "web_search" and call["tool_s"] == pytest.approx(1.0)
    # partial starts at the query's last character; complete-call at the call's end
    assert est["saved"]["partial"] > est["saved"]["complete_call"] > 0
    assert est["turns"][0]["ends"]["partial"] == pytest.approx(query_final - T + 1.0, abs=0.03)
    assert [Path(p).suffix for p in data["plots"]] == [".png"]


@pytest.mark.parametrize("args,message", [
    (["analyze", "{missing}"], "no such file"),
    (["analyze", "{bad}"], "not a trace this reads"),
    (["analyze", "{log}", "--kind", "otlp"], "not OTLP JSON"),
    (["analyze", "{log}", "--tool-format", "klingon"], "--tool-format 'klingon' is unknown"),
    (["analyze", "{log}", "--rate", "0"], "--rate must be a positive number"),
    (["analyze", "{log}", "--strategy", "web_search=sometimes"], "web_search=sometimes"),
    (["analyze", "{log}", "--tools", "no_such_module_here:TOOLS"], "no module named"),
])
def test_unusable_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         args: list[str], message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": "world"}))
    paths = {"missing": str(tmp_path / "nope.json"), "bad": str(bad),
             "log": str(_chatlog(tmp_path / "log.jsonl"))}
    argv = [a.format(**paths) for a in args] + ["--out", str(tmp_path / "out"), "--no-plots"]
    assert main(argv) == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert "error:" in printed and message in printed, printed
    assert not (tmp_path / "out" / "analysis.json").exists()
