"""Chat-completion logs (OpenAI-style, one JSON line per model request) as recorded runs.

The format is what a logging proxy or a client wrapper records of each request: what it sent,
when, each streamed chunk as it arrived, and the tool runs the agent made on its calls::

    {"run": "task-7",
     "request": {"model": "qwen2.5-7b", "messages": [...], "tools": [...]},
     "started": 1718000000.125,
     "chunks": [{"t": 1718000000.412, "chunk": {"object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {"content": "Let me"}}]}}, ...],
     "tool_results": [{"tool_call_id": "call_1", "name": "web_search",
                       "started": 1718000001.02, "ended": 1718000001.87}]}

- ``run``: any string or number; consecutive lines with the same ``run`` (or all without one)
  form one run, named by it (else by the file).
- ``request``: the request body as sent; only ``model`` is read (the rest is for your records).
- ``started``: unix seconds when the request was sent.
- ``chunks``: each ``chat.completion.chunk`` object as received (``model_dump()`` of the
  OpenAI client's chunk, or the SSE ``data:`` JSON), with ``t``, its arrival in unix seconds;
  ``choices[0].delta`` (of choice ``index`` 0) is the delta the estimate replays, format
  ``openai`` (a stream without ``tool_calls`` deltas is replayed as text, so calls written
  in it are parsed by ``--tool-format``, default ``hermes``); a chunk's
  ``usage.completion_tokens`` (``stream_options.include_usage``) is read.
- or, for a request that was not streamed, ``response`` (the ``chat.completion`` object:
  ``choices[0].message`` with ``content`` and ``tool_calls``, ``usage``) and ``ended`` (unix
  seconds it was received): the message is then decoded at the turn's own rate.
- ``tool_results`` (optional): the tool runs on this response's calls, each with ``name``,
  ``started`` and ``ended`` (unix seconds), ``tool_call_id`` (pairs it with its call) and
  optionally ``error`` (true if it failed) and ``arguments``.

Times are any unix-seconds clock the logger keeps (only differences count). Written by hand:
the format is this library's, for logs no tracing tool keeps. Example::

    >>> line = {"run": "t1", "request": {"model": "m"}, "started": 100.0, "chunks": [
    ...     {"t": 100.5, "chunk": {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}},
    ...     {"t": 100.8, "chunk": {"choices": [{"index": 0, "delta": {"tool_calls": [
    ...         {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}}]}}],
    ...     "tool_results": [{"tool_call_id": "c1", "name": "f", "started": 101.0, "ended": 102.5}]}
    >>> (run,) = runs_of_chatlog([("line 1", line)])
    >>> t = run.turns[0]
    >>> [round(at, 3) for at, _ in t.chunks], t.end, t.tools[0].duration_s, run.duration_s
    ([0.5, 0.8], 0.8, 1.5, 2.5)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .model import RecordedRun, RecordedTool, RecordedTurn
from .trace_io import Records, TraceError, as_dict, as_list, finish_run, norm_call, text_of

__all__ = ["runs_of_chatlog"]


def _num(origin: str, where: str, obj: dict[str, Any], key: str, what: str) -> float:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        got = "missing" if v is None else f"{v!r}"
        raise TraceError(origin, f"{where}: {what}{key!r} must be unix seconds (a number), "
                                 f"not {got}")
    return float(v)


def _choice(obj: Any) -> dict[str, Any] | None:
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not isinstance(choices, list) or not choices:
        return None
    first = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0),
                 choices[0])
    return first if isinstance(first, dict) else None


def _tokens(obj: Any) -> int | None:
    usage = obj.get("usage") if isinstance(obj, dict) else None
    n = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _turn(origin: str, where: str, rec: dict[str, Any]) -> RecordedTurn:
    started = _num(origin, where, rec, "started", "")
    model = as_dict(rec.get("request")).get("model")
    tokens: int | None = None
    if "chunks" in rec:
        if not isinstance(rec["chunks"], list):
            raise TraceError(origin, f"{where}: 'chunks' must be a list of {{t, chunk}}")
        chunks: list[tuple[float, Any]] = []
        last = started
        for k, c in enumerate(rec["chunks"]):
            if not isinstance(c, dict) or not isinstance(c.get("chunk"), dict):
                raise TraceError(origin, f"{where}: chunks[{k}] is not {{\"t\", \"chunk\": "
                                         "{...}}")
            last = _num(origin, where, c, "t", f"chunks[{k}] ")
            tokens = _tokens(c["chunk"]) or tokens
            model = model or c["chunk"].get("model")
            choice = _choice(c["chunk"])
            if choice is None:            # the usage-only last chunk: no choices
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                raise TraceError(origin, f"{where}: chunks[{k}]: choices[0].delta is not an "
                                         "object")
            piece = {k2: v for k2, v in delta.items()
                     if k2 in ("content", "tool_calls") and v}
            if piece:
                chunks.append((last, piece))
        end = _num(origin, where, rec, "ended", "") if "ended" in rec else last
        fmt: str | None = "openai"
        if not any("tool_calls" in d for _, d in chunks):    # text alone: calls may be in it
            chunks, fmt = [(t, str(d["content"])) for t, d in chunks], None
        return RecordedTurn(started, max(end, last), chunks=chunks, tool_format=fmt,
                            output_tokens=tokens, model=str(model) if model else None)
    response = rec.get("response")
    choice = _choice(response)
    if choice is None or not isinstance(choice.get("message"), dict):
        raise TraceError(origin, f"{where}: 'response' has no choices[0].message (a "
                                 "chat.completion object)")
    msg = choice["message"]
    calls = [c for c in (norm_call(x) for x in as_list(msg.get("tool_calls"))) if c is not None]
    model = model or as_dict(response).get("model")
    return RecordedTurn(started, _num(origin, where, rec, "ended", ""),
                        text=text_of(msg.get("content")), tool_calls=calls,
                        tool_format="openai" if calls else None, output_tokens=_tokens(response),
                        model=str(model) if model else None)


def _tools(origin: str, where: str, rec: dict[str, Any]) -> list[RecordedTool]:
    results = rec.get("tool_results") or []
    if not isinstance(results, list):
        raise TraceError(origin, f"{where}: 'tool_results' must be a list")
    out = []
    for k, r in enumerate(results):
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            raise TraceError(origin, f"{where}: tool_results[{k}] has no 'name'")
        start = _num(origin, where, r, "started", f"tool_results[{k}] ")
        end = _num(origin, where, r, "ended", f"tool_results[{k}] ")
        cid = r.get("tool_call_id")
        args = r.get("arguments")
        out.append(RecordedTool(r["name"], start, max(start, end),
                                call_id=str(cid) if cid else None,
                                args=args if isinstance(args, dict) else None,
                                error=bool(r.get("error"))))
    return out


def runs_of_chatlog(records: Records, origin: str = "chatlog",
                    notes: list[str] | None = None) -> list[RecordedRun]:
    """The recorded runs of chat-log ``records`` (see the module's docstring for the format);
    :class:`~.trace_io.TraceError` names the line and field that are wrong. ``notes`` (if
    given) gets what was left out."""
    notes = notes if notes is not None else []
    groups: list[tuple[Any, list[tuple[str, dict[str, Any]]]]] = []
    for where, rec in records:
        here = where or "the file"
        if not isinstance(rec, dict) or not isinstance(rec.get("request"), dict):
            raise TraceError(origin, f"{here}: not a chat-log line (no 'request' object)")
        if "chunks" not in rec and "response" not in rec:
            raise TraceError(origin, f"{here}: a chat-log line needs 'chunks' (streamed) or "
                                     "'response' (not streamed)")
        key = rec.get("run")
        if groups and groups[-1][0] == key:
            groups[-1][1].append((here, rec))
        else:
            groups.append((key, [(here, rec)]))
    runs: list[RecordedRun] = []
    for key, lines in groups:
        turns = [_turn(origin, where, rec) for where, rec in lines]
        tools = [x for where, rec in lines for x in _tools(origin, where, rec)]
        name = str(key) if key is not None else Path(origin).stem
        run = finish_run(name, "chatlog", turns, tools, f"{origin} {lines[0][0]}", notes)
        if run is not None:
            runs.append(run)
    return runs
