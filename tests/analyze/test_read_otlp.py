"""OTLP JSON spans written with the OpenTelemetry SDK (GenAI semantic conventions), read back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from google.protobuf.json_format import MessageToJson
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, Tracer, set_span_in_context, use_span

from conveyor_integrations.analyze.read_otlp import runs_of_otlp
from conveyor_integrations.analyze.readers import TraceError, read_traces

T0 = 1_750_000_000_000_000_000
S = 1_000_000_000
ARGS = {"query": "weather in Paris", "k": 3}
CALL_MSG = json.dumps([{"role": "assistant", "finish_reason": "tool_call", "parts": [
    {"type": "text", "content": "Let me look."},
    {"type": "tool_call", "id": "call_1", "name": "web_search", "arguments": ARGS}]}])
ANSWER_MSG = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}]}])


def _provider() -> tuple[Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("agent"), exporter


def _span(tracer: Tracer, name: str, start: float, end: float, attrs: dict[str, Any],
          error: bool = False, events: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
    span = tracer.start_span(name, start_time=T0 + int(start * S), attributes=attrs)
    for ev_name, ev_attrs in events:
        span.add_event(ev_name, ev_attrs, timestamp=T0 + int(start * S))
    if error:
        span.set_status(Status(StatusCode.ERROR, "boom"))
    span.end(end_time=T0 + int(end * S))


def _agent_trace(tracer: Tracer, at: float, old_events: bool = False) -> None:
    """invoke_agent > chat (calls web_search) > execute_tool web_search > chat (answer); the
    tool runs a sub-agent whose chat span is no turn of this run."""
    root = tracer.start_span("invoke_agent weather", start_time=T0 + int(at * S),
                             attributes={"gen_ai.operation.name": "invoke_agent"})
    with use_span(root):
        chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "qwen",
                "gen_ai.usage.output_tokens": 30}
        if old_events:
            _span(tracer, "chat qwen", at, at + 1.2, chat, events=[("gen_ai.choice", {
                "index": 0, "finish_reason": "tool_calls", "message": json.dumps({
                    "content": "Let me look.", "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "web_search", "arguments": json.dumps(ARGS)}}]})})])
        else:
            _span(tracer, "chat qwen", at, at + 1.2, {**chat, "gen_ai.output.messages": CALL_MSG})
        tool = tracer.start_span("execute_tool web_search", start_time=T0 + int((at + 1.25) * S),
                                 attributes={"gen_ai.operation.name": "execute_tool",
                                             "gen_ai.tool.name": "web_search",
                                             "gen_ai.tool.call.id": "call_1",
                                             "gen_ai.tool.call.arguments": json.dumps(ARGS)})
        with use_span(tool):
            _span(tracer, "chat sub", at + 1.3, at + 1.9,
                  {"gen_ai.operation.name": "chat", "gen_ai.output.messages": ANSWER_MSG})
        tool.end(end_time=T0 + int((at + 2.05) * S))
        ctx = set_span_in_context(root)
        span = tracer.start_span("chat qwen", context=ctx, start_time=T0 + int((at + 2.1) * S),
                                 attributes={**chat, "gen_ai.usage.output_tokens": 5,
                                             "gen_ai.output.messages": ANSWER_MSG})
        span.end(end_time=T0 + int((at + 2.6) * S))
    root.end(end_time=T0 + int((at + 2.7) * S))


def _check(run: Any) -> None:
    first, second = run.turns
    assert (first.start, first.end, first.output_tokens, first.model) == (0.0, 1.2, 30, "qwen")
    assert first.text == "Let me look." and first.tool_format == "openai"
    assert [(c["id"], c["name"]) for c in first.tool_calls] == [("call_1", "web_search")]
    args = first.tool_calls[0]["arguments"]
    assert (json.loads(args) if isinstance(args, str) else args) == ARGS
    (tool,) = first.tools
    assert (tool.name, tool.call_id, tool.args, tool.error) == ("web_search", "call_1", ARGS, False)
    assert tool.start == 1.25 and tool.duration_s == pytest.approx(0.8)
    assert second.text == "Sunny." and second.tool_calls == [] and second.tool_format is None
    assert (second.start, second.end, second.output_tokens, second.tools) == (2.1, 2.6, 5, [])
    assert run.duration_s == 2.6


def test_sdk_spans_as_otlp_json(tmp_path: Path) -> None:
    tracer, exporter = _provider()
    _agent_trace(tracer, 0.0)
    _agent_trace(tracer, 10.0, old_events=True)
    path = tmp_path / "spans.json"
    path.write_text(MessageToJson(encode_spans(exporter.get_finished_spans())))
    assert "==" in path.read_text()                       # MessageToJson: base64 ids
    runs = read_traces([path])
    assert [r.source for r in runs] == ["otlp", "otlp"]
    assert all(r.name.startswith("invoke_agent weather ") for r in runs)
    for run in runs:
        _check(run)
    assert isinstance(runs[1].turns[0].tool_calls[0]["arguments"], str)   # as the event has it


def test_json_lines_one_export_per_trace(tmp_path: Path) -> None:
    lines = []
    for at in (0.0, 5.0):
        tracer, exporter = _provider()
        _agent_trace(tracer, at)
        lines.append(MessageToJson(encode_spans(exporter.get_finished_spans()), indent=None))
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(lines) + "\n")
    runs = read_traces([path], kind="otlp")
    assert len(runs) == 2
    for run in runs:
        _check(run)


def _attr(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


def test_hand_written_otlp_hex_ids_structured_messages_nested_model_spans() -> None:
    """Hex ids (the OTLP/JSON spec), int ``code``, a structured ``gen_ai.output.messages``
    (kvlistValue), and a framework chat span around the client's (the inner one is kept, its
    message taken from the outer one)."""
    tid = "5b8aa5a2d2c872e8321cf37308d69df2"
    message = {"kvlistValue": {"values": [
        _attr("role", {"stringValue": "assistant"}),
        _attr("parts", {"arrayValue": {"values": [{"kvlistValue": {"values": [
            _attr("type", {"stringValue": "tool_call"}), _attr("id", {"stringValue": "c9"}),
            _attr("name", {"stringValue": "run"}),
            _attr("arguments", {"stringValue": '{"code": "print(1)"}'})]}}]}})]}}
    spans = [
        {"traceId": tid, "spanId": "051581bf3cb55c13", "name": "chat framework",
         "startTimeUnixNano": 1000, "endTimeUnixNano": 2_000_001_000,
         "attributes": [_attr("gen_ai.operation.name", {"stringValue": "chat"}),
                        _attr("gen_ai.output.messages", {"arrayValue": {"values": [message]}})]},
        {"traceId": tid, "spanId": "5fb397be34d26b51", "parentSpanId": "051581bf3cb55c13",
         "name": "chat client", "startTimeUnixNano": "500001000",
         "endTimeUnixNano": "2000001000",
         "attributes": [_attr("gen_ai.operation.name", {"stringValue": "chat"}),
                        _attr("gen_ai.usage.output_tokens", {"intValue": "12"})]},
        {"traceId": tid, "spanId": "7fb397be34d26b51", "name": "execute_tool run",
         "startTimeUnixNano": "2100001000", "endTimeUnixNano": "2600001000",
         "status": {"code": 2}, "attributes": [
             _attr("gen_ai.operation.name", {"stringValue": "execute_tool"}),
             _attr("gen_ai.tool.call.id", {"stringValue": "c9"})]}]
    (run,) = runs_of_otlp([("line 1", {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})])
    (turn,) = run.turns
    assert (turn.start, turn.end, turn.output_tokens) == (0.0, 1.5, 12)
    assert turn.tool_calls == [{"id": "c9", "name": "run", "arguments": '{"code": "print(1)"}'}]
    (tool,) = turn.tools
    assert (tool.name, tool.call_id, tool.error, tool.duration_s) == ("run", "c9", True, 0.5)
    assert run.name.endswith(tid[:8])


def test_bad_span_names_file_span_and_field(tmp_path: Path) -> None:
    bad = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "chat",
         "startTimeUnixNano": "soon", "endTimeUnixNano": "2"}]}]}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(TraceError) as err:
        read_traces([path])
    msg = str(err.value)
    assert msg.startswith(str(path)) and "spans[0]" in msg and "startTimeUnixNano" in msg
    assert "'soon' is not nanoseconds" in msg
