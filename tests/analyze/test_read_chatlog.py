"""Chat-completion logs (one JSON line per model request), written here as a logging proxy
would, read back; their deltas replay through the ``openai`` parser at the logged times."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conveyor_integrations.analyze.estimate import estimate_run
from conveyor_integrations.analyze.readers import TraceError, read_traces
from conveyor_integrations.analyze.strategy import Strategy

T = 1_718_000_000.0


def _chunk(t: float, delta: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk",
                            "model": "qwen2.5-7b", "choices": [], **more}
    if delta is not None:
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}]
    return {"t": T + t, "chunk": body}


def _tc(**fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": 0, **fields}]}


STREAMED = {
    "run": "task-1", "request": {"model": "qwen2.5-7b", "messages": [], "tools": []},
    "started": T + 0.0,
    "chunks": [_chunk(0.30, {"role": "assistant", "content": "I will "}),
               _chunk(0.35, {"content": "search."}),
               _chunk(0.40, _tc(id="call_a", type="function",
                                function={"name": "web_search", "arguments": ""})),
               _chunk(0.45, _tc(function={"arguments": '{"query": "weather'})),
               _chunk(0.50, _tc(function={"arguments": ' in Paris", '})),
               _chunk(0.60, _tc(function={"arguments": '"k": 3}'})),
               _chunk(0.61, {}, ),
               _chunk(0.62, None, usage={"prompt_tokens": 40, "completion_tokens": 12})],
    "tool_results": [{"tool_call_id": "call_a", "name": "web_search",
                      "started": T + 0.65, "ended": T + 1.45}]}
ANSWERED = {
    "run": "task-1", "request": {"model": "qwen2.5-7b", "messages": []},
    "started": T + 1.5, "ended": T + 2.0,
    "response": {"object": "chat.completion", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "It is sunny."}, "finish_reason": "stop"}],
        "usage": {"completion_tokens": 5}}}
TEXT_ONLY = {
    "run": "task-2", "request": {"model": "m"}, "started": T + 9.0,
    "chunks": [_chunk(9.2, {"content": '<tool_call>{"name": "f", '}),
               _chunk(9.3, {"content": '"arguments": {}}</tool_call>'})],
    "tool_results": [{"name": "f", "started": T + 9.4, "ended": T + 9.5, "error": True}]}


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_streamed_and_answered_requests_form_runs(tmp_path: Path) -> None:
    path = _write(tmp_path / "proxy.jsonl", [STREAMED, ANSWERED, TEXT_ONLY])
    one, two = read_traces([path])
    assert (one.name, one.source, two.name) == ("task-1", "chatlog", "task-2")

    first, second = one.turns
    assert first.tool_format == "openai" and first.output_tokens == 12
    assert first.model == "qwen2.5-7b"
    assert [at for at, _ in first.chunks] == [0.3, 0.35, 0.4, 0.45, 0.5, 0.6]  # empty ones out
    assert first.chunks[0][1] == {"content": "I will "}                      # role dropped
    assert (first.start, first.end) == (0.0, 0.62)
    (tool,) = first.tools
    assert (tool.call_id, tool.start, tool.duration_s) == ("call_a", 0.65, 0.8)
    assert (second.start, second.end, second.text, second.output_tokens) == (1.5, 2.0,
                                                                             "It is sunny.", 5)
    assert second.chunks == [] and second.tool_format is None and second.tools == []
    assert one.duration_s == 2.0

    (turn,) = two.turns
    assert turn.tool_format is None and [d for _, d in turn.chunks] == [
        '<tool_call>{"name": "f", ', '"arguments": {}}</tool_call>']   # text: hermes parses it
    assert turn.tools[0].error is True and turn.tools[0].call_id is None


def test_estimate_replays_the_deltas_at_their_times(tmp_path: Path) -> None:
    (run, _) = read_traces([_write(tmp_path / "log.jsonl", [STREAMED, ANSWERED, TEXT_ONLY])])
    est = estimate_run(run, {"web_search": Strategy("start_on", ("query",),
                                                    defaults=(("k", "3"),))})
    (call,) = est.turns[0].calls
    assert (call.name, call.call_id, call.began, call.done) == ("web_search", "call_a", 0.4, 0.6)
    assert call.ends["complete_call"] == pytest.approx(0.6 + 0.8)
    assert call.ends["partial"] == pytest.approx(0.5 + 0.8)      # query final at the 0.50 chunk


@pytest.mark.parametrize(("line", "problem"), [
    ({**STREAMED, "started": "noon"}, ("line 2: 'started' must be unix seconds (a number), not "
                                      "'noon'")),
    ({k: v for k, v in ANSWERED.items() if k != "ended"}, "line 2: 'ended' must be unix seconds"),
    ({**STREAMED, "chunks": [{"t": T}]}, "line 2: chunks[0] is not"),
    ({**STREAMED, "chunks": [{"t": "x", "chunk": {}}]}, "line 2: chunks[0] 't' must be unix"),
    ({**STREAMED, "tool_results": [{"name": "f", "started": T}]},
     "line 2: tool_results[0] 'ended' must be unix seconds (a number), not missing"),
    ({**ANSWERED, "response": {"choices": []}}, "line 2: 'response' has no choices[0].message"),
    ({"request": {}, "started": T}, "line 2: a chat-log line needs 'chunks'"),
    ('{"request": ', "line 2: not JSON"),
])
def test_bad_lines_name_file_line_and_field(tmp_path: Path, line: Any, problem: str) -> None:
    path = _write(tmp_path / "bad.jsonl", [STREAMED, line])
    with pytest.raises(TraceError) as err:
        read_traces([path], kind="chatlog")
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)
