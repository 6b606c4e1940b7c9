"""OpenTelemetry spans in OTLP JSON, read by the GenAI semantic conventions, as recorded runs.

Reads ``{"resourceSpans": [{"scopeSpans": [{"spans": [...]}]}]}`` objects (OTLP/JSON as an
OTLP exporter, ``MessageToJson`` or the collector's file exporter writes them: one object, a
list, or JSON lines of them); ids hex or base64, times ``startTimeUnixNano``/
``endTimeUnixNano`` (strings or numbers), attributes ``[{"key", "value": {"stringValue"|
"intValue"|"doubleValue"|"boolValue"|"arrayValue"|"kvlistValue"}}]``. One run per trace id.

- a model span (``gen_ai.operation.name`` ``chat``, ``text_completion`` or
  ``generate_content``) is one turn: its message from ``gen_ai.output.messages`` (JSON text
  or structured: ``[{"role": "assistant", "parts": [{"type": "text", "content"}, {"type":
  "tool_call", "id", "name", "arguments"}]}]``; on the span or on a span event), else the
  older ``gen_ai.choice`` events (``message``: ``content``, ``tool_calls``), the
  ``gen_ai.content.completion`` event's ``gen_ai.completion`` or the flattened
  ``gen_ai.completion.0.*`` attributes; ``gen_ai.usage.output_tokens``;
  ``gen_ai.request.model``. Spans keep no chunk times, so each message is decoded at its
  turn's own rate (output tokens over the span);
- a tool span (``execute_tool``) is one tool run: ``gen_ai.tool.name``,
  ``gen_ai.tool.call.id`` (pairs it with its call), ``gen_ai.tool.call.arguments``; an error
  status or ``error.type`` marks it failed.

Spans under a tool span (a sub-agent used as a tool) are not turns of their own; of nested
model spans (a framework's and its client's) the innermost is kept. Written by hand: the OTel
SDK writes OTLP but reads none back, and no library groups GenAI spans into agent turns.
Example::

    >>> def attr(k, v):
    ...     return {"key": k, "value": {"intValue" if isinstance(v, int) else "stringValue": v}}
    >>> def span(sid, name, start, end, attrs):
    ...     return {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": sid, "name": name,
    ...             "startTimeUnixNano": str(start), "endTimeUnixNano": str(end),
    ...             "attributes": [attr("gen_ai." + k, v) for k, v in attrs.items()]}
    >>> msgs = ('[{"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", '
    ...         '"name": "search", "arguments": {"q": "x"}}]}]')
    >>> chat = span("b7ad6b7169203331", "chat m", 10**9, 3 * 10**9, {"operation.name": "chat",
    ...             "usage.output_tokens": 20, "output.messages": msgs})
    >>> tool = span("00f067aa0ba902b7", "execute_tool search", 3 * 10**9, 45 * 10**8, {
    ...             "operation.name": "execute_tool", "tool.name": "search", "tool.call.id": "c1"})
    >>> export = {"resourceSpans": [{"scopeSpans": [{"spans": [chat, tool]}]}]}
    >>> (run,) = runs_of_otlp([("", export)])
    >>> t = run.turns[0]
    >>> t.tool_calls[0]["arguments"], t.output_tokens, t.tools[0].call_id, t.tools[0].duration_s
    ({'q': 'x'}, 20, 'c1', 1.5)
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from .model import RecordedRun, RecordedTool, RecordedTurn
from .trace_io import Records, TraceError, as_dict, as_list, finish_run, norm_call, text_of

__all__ = ["runs_of_otlp"]

_MODEL_OPS = ("chat", "text_completion", "generate_content")
_HEX = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")


@dataclass
class _Span:
    trace: str
    id: str
    parent: str
    name: str
    start: int
    end: int
    attrs: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    error: bool
    where: str


def _value(v: Any) -> Any:
    """An OTLP ``AnyValue`` as Python."""
    if not isinstance(v, dict):
        return v
    if "arrayValue" in v:
        return [_value(x) for x in as_list(as_dict(v["arrayValue"]).get("values"))]
    if "kvlistValue" in v:
        return _attrs(as_dict(v["kvlistValue"]).get("values"))
    if "intValue" in v:
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            return v["intValue"]
    for key in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
        if key in v:
            return v[key]
    return None


def _attrs(items: Any) -> dict[str, Any]:
    return {str(a["key"]): _value(a.get("value")) for a in as_list(items)
            if isinstance(a, dict) and "key" in a}


def _id(v: Any) -> str:
    s = str(v or "")
    if _HEX.fullmatch(s):
        return s.lower()
    try:
        return base64.b64decode(s, validate=True).hex()
    except (binascii.Error, ValueError):
        return s


def _ns(origin: str, where: str, span: dict[str, Any], key: str) -> int:
    try:
        return int(span[key])
    except (KeyError, TypeError, ValueError):
        raise TraceError(origin, f"{where}: span {span.get('name')!r}: {key} "
                                 f"{span.get(key)!r} is not nanoseconds") from None


def _spans(records: Records, origin: str) -> list[_Span]:
    out: list[_Span] = []
    for where, rec in records:
        here = where or "the file"
        if not isinstance(rec, dict) or not isinstance(rec.get("resourceSpans"), list):
            raise TraceError(origin, f"{here}: not OTLP JSON (no resourceSpans list)")
        for i, rs in enumerate(rec["resourceSpans"]):
            scopes = as_dict(rs).get("scopeSpans", as_dict(rs).get("instrumentationLibrarySpans"))
            for j, ss in enumerate(as_list(scopes)):
                for k, sp in enumerate(as_list(as_dict(ss).get("spans"))):
                    at = f"{here} resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                    if not isinstance(sp, dict) or not sp.get("traceId"):
                        raise TraceError(origin, f"{at}: not a span (no traceId)")
                    code = as_dict(sp.get("status")).get("code")
                    events = [(str(e.get("name") or ""), _attrs(e.get("attributes")))
                              for e in as_list(sp.get("events")) if isinstance(e, dict)]
                    attrs = _attrs(sp.get("attributes"))
                    out.append(_Span(_id(sp["traceId"]), _id(sp.get("spanId")),
                                     _id(sp.get("parentSpanId")), str(sp.get("name") or ""),
                                     _ns(origin, at, sp, "startTimeUnixNano"),
                                     _ns(origin, at, sp, "endTimeUnixNano"), attrs, events,
                                     code in (2, "STATUS_CODE_ERROR", "ERROR")
                                     or "error.type" in attrs, at))
    return out


def _kind(s: _Span) -> str | None:
    op = s.attrs.get("gen_ai.operation.name")
    if op in _MODEL_OPS or (op is None and s.attrs.get("llm.request.type")
                            in ("chat", "completion")):
        return "model"
    if op == "execute_tool" or (op is None and "gen_ai.tool.name" in s.attrs):
        return "tool"
    return None


def _json(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return None
    return v


def _from_parts(messages: Any) -> tuple[str, list[dict[str, Any]]] | None:
    if isinstance(messages, dict):
        messages = [messages]
    if not isinstance(messages, list) or not messages:
        return None
    msg = next((m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"),
               messages[0])
    if not isinstance(msg, dict):
        return None
    parts = msg.get("parts")
    if not isinstance(parts, list):        # OpenAI-style message (older gen_ai.completion)
        raw = as_dict(msg.get("message")) or msg
        calls = [norm_call(c) for c in as_list(raw.get("tool_calls"))]
        return text_of(raw.get("content")), [c for c in calls if c is not None]
    text = "".join(str(p.get("content") or "") for p in parts
                   if isinstance(p, dict) and p.get("type") == "text")
    calls = [norm_call(p) for p in parts if isinstance(p, dict) and p.get("type") == "tool_call"]
    return text, [c for c in calls if c is not None]


def _flat(attrs: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """OpenLLMetry's flattened ``gen_ai.completion.0.content`` / ``.tool_calls.N.*``."""
    pre = "gen_ai.completion.0."
    if not any(k.startswith(pre) for k in attrs):
        return None
    calls = []
    for n in range(64):
        name = attrs.get(f"{pre}tool_calls.{n}.name")
        if name is None:
            break
        calls.append(norm_call({"id": attrs.get(f"{pre}tool_calls.{n}.id"), "name": name,
                                "arguments": attrs.get(f"{pre}tool_calls.{n}.arguments")}))
    return str(attrs.get(f"{pre}content") or ""), [c for c in calls if c is not None]


def _message(s: _Span) -> tuple[str, list[dict[str, Any]]] | None:
    if (got := _from_parts(_json(s.attrs.get("gen_ai.output.messages")))) is not None:
        return got
    for name, attrs in s.events:
        if "gen_ai.output.messages" in attrs:
            if (got := _from_parts(_json(attrs["gen_ai.output.messages"]))) is not None:
                return got
        elif name == "gen_ai.choice":
            body = _json(attrs.get("message", attrs.get("body")))
            if (got := _from_parts(body if body is not None else attrs)) is not None:
                return got
        elif name == "gen_ai.content.completion" and (
                got := _from_parts(_json(attrs.get("gen_ai.completion")))) is not None:
            return got
    return _flat(s.attrs)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def runs_of_otlp(records: Records, origin: str = "otlp",
                 notes: list[str] | None = None) -> list[RecordedRun]:
    """The recorded runs of OTLP JSON ``records`` (see the module's docstring), one per trace
    id in first-seen order; :class:`~.trace_io.TraceError` names the record or span that is not
    OTLP. ``notes`` (if given) gets what was left out."""
    notes = notes if notes is not None else []
    spans = _spans(records, origin)
    by_id = {(s.trace, s.id): s for s in spans}

    def ups(s: _Span) -> list[_Span]:
        out, seen = [], {s.id}
        while s.parent and (p := by_id.get((s.trace, s.parent))) and p.id not in seen:
            seen.add(p.id)
            out.append(p)
            s = p
        return out

    traces: dict[str, list[_Span]] = {}
    for s in spans:
        traces.setdefault(s.trace, [])
    kept: dict[tuple[str, str], _Span] = {}
    outer: set[tuple[str, str]] = set()
    for s in spans:
        if (kind := _kind(s)) is None or any(_kind(u) == "tool" for u in ups(s)):
            continue
        if kind == "model":
            outer.update((u.trace, u.id) for u in ups(s) if _kind(u) == "model")
        kept[(s.trace, s.id)] = s
    runs: list[RecordedRun] = []
    unread = 0
    for trace in traces:
        turns: list[RecordedTurn] = []
        tools: list[RecordedTool] = []
        members = [s for k, s in kept.items() if s.trace == trace and k not in outer]
        base = min((s.start for s in members), default=0)
        for s in sorted(members, key=lambda s: s.start):
            start, end = (s.start - base) / 1e9, (s.end - base) / 1e9
            if _kind(s) == "tool":
                name = s.attrs.get("gen_ai.tool.name") or s.name.removeprefix("execute_tool ")
                args = _json(s.attrs.get("gen_ai.tool.call.arguments"))
                cid = s.attrs.get("gen_ai.tool.call.id")
                tools.append(RecordedTool(str(name), start, end, call_id=str(cid) if cid else None,
                                          args=args if isinstance(args, dict) else None,
                                          error=s.error))
                continue
            got = _message(s) or next((m for u in ups(s) if _kind(u) == "model"
                                       and (m := _message(u)) is not None), None)
            if got is None:
                unread += 1
            text, calls = got or ("", [])
            tokens = _int(s.attrs.get("gen_ai.usage.output_tokens")) \
                or _int(s.attrs.get("gen_ai.usage.completion_tokens")) \
                or _int(s.attrs.get("llm.usage.completion_tokens"))
            model = s.attrs.get("gen_ai.request.model") or s.attrs.get("gen_ai.response.model")
            turns.append(RecordedTurn(start, end, text=text, tool_calls=calls,
                                      tool_format="openai" if calls else None,
                                      output_tokens=tokens,
                                      model=str(model) if model else None))
        root = next((s for s in spans if s.trace == trace and (s.trace, s.parent) not in by_id),
                    None)
        name = (root.attrs.get("gen_ai.agent.name") or root.name) if root else "trace"
        run = finish_run(f"{name} {trace[:8]}", "otlp", turns, tools,
                         f"{origin} trace {trace}", notes)
        if run is not None:
            runs.append(run)
    if unread:
        notes.append(f"{origin}: {unread} model span(s) record no output message (content "
                     "capture off?): their tool calls are unknown")
    return runs
