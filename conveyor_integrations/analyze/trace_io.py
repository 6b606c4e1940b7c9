"""What the trace readers of ``conveyor analyze`` share: :class:`TraceError`, a file read as JSON
or JSON lines, the normal form of a tool call, and a run put together from its turns and tools.

A file is one JSON document (a list gives one record per element, ``record N``; an object is one
record) or JSON lines (one record per line, ``line N``); each reader then checks its records'
shape and names the record in every error. Example::

    >>> norm_call({"name": "search", "args": {"q": "paris"}, "id": "call_1", "type": "tool_call"})
    {'id': 'call_1', 'name': 'search', 'arguments': {'q': 'paris'}}
    >>> norm_call({"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}})
    {'id': 'c2', 'name': 'f', 'arguments': '{}'}
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .model import RecordedRun, RecordedTool, RecordedTurn

__all__ = ["Records", "TraceError", "as_dict", "as_list", "finish_run", "load_records", "norm_call",
           "seconds", "text_of"]

Records = list[tuple[str, Any]]
"""``(where, record)``: where it is in its file (``line 3``, ``record 2``, or ``""`` for a file
that is one object), and the parsed JSON."""


class TraceError(Exception):
    """A trace that cannot be read; ``str()`` names the file (and line or record) and what is
    wrong with it. Example::

        >>> err = TraceError("runs.json", "line 3: not JSON")
        >>> str(err), err.path, err.reason
        ('runs.json: line 3: not JSON', 'runs.json', 'line 3: not JSON')
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def load_records(path: str | Path) -> Records:
    """The records of the JSON or JSON-lines file ``path``; :class:`TraceError` when it cannot
    be read or is neither. Example::

        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = pathlib.Path(d, "log.jsonl")
        ...     _ = p.write_text('{"a": 1}\\n\\n{"a": 2}\\n')
        ...     load_records(p)
        [('line 1', {'a': 1}), ('line 3', {'a': 2})]
    """
    p = Path(path)
    if p.is_dir():
        raise TraceError(path, "is a directory, not a trace file")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(path, "no such file") from None
    except UnicodeDecodeError:
        raise TraceError(path, "not UTF-8 text (a JSON or JSON-lines trace is)") from None
    except OSError as exc:
        raise TraceError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not text.strip():
        raise TraceError(path, "empty file")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as whole:
        return _lines(path, text, whole)
    if isinstance(doc, list):
        if not doc:
            raise TraceError(path, "an empty JSON list: no records")
        return [(f"record {i + 1}", r) for i, r in enumerate(doc)]
    return [("", doc)]


def _lines(path: str | Path, text: str, whole: json.JSONDecodeError) -> Records:
    out: Records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            if not out:      # not JSON lines either: the document's own error says more
                raise TraceError(path, f"not JSON ({whole.msg} at line {whole.lineno}, column "
                                       f"{whole.colno}) nor JSON lines") from None
            raise TraceError(path, f"line {n}: not JSON ({exc.msg} at column {exc.colno})"
                             ) from None
    return out


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else an empty one (for reading optional nested fields).

    >>> as_dict({"a": 1}).get("a"), as_dict(None).get("a")
    (1, None)
    """
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a list, else an empty one.

    >>> as_list([1]), as_list("text")
    ([1], [])
    """
    return value if isinstance(value, list) else []


def seconds(value: Any) -> float | None:
    """Unix seconds of an ISO 8601 time (naive: UTC) or of a number; None if it is neither.

    >>> seconds("1970-01-01T00:00:01.5Z"), seconds("1970-01-01 00:00:02"), seconds("noon")
    (1.5, 2.0, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of strings and text blocks
    (``{"type": "text", "text"|"content": ...}``); other blocks are left out.

    >>> text_of([{"type": "text", "text": "a"}, {"type": "image_url"}, "b"]), text_of(None)
    ('ab', '')
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    out = []
    for block in content:
        if isinstance(block, str):
            out.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            piece = block.get("text", block.get("content"))
            out.append(piece if isinstance(piece, str) else "")
    return "".join(out)


def norm_call(call: Any) -> dict[str, Any] | None:
    """A tool call (LangChain's ``{"name", "args", "id"}``, OpenAI's ``{"id", "function":
    {"name", "arguments"}}`` or a GenAI semconv ``tool_call`` part) as ``{"id", "name",
    "arguments"}`` (a dict or its JSON text); None when it names no tool."""
    if not isinstance(call, dict):
        return None
    fn = call.get("function")
    src = fn if isinstance(fn, dict) else call
    name = src.get("name")
    if not isinstance(name, str) or not name:
        return None
    args = src.get("args", src.get("arguments"))
    if not isinstance(args, dict | str):
        args = {}
    cid = call.get("id") or call.get("tool_call_id")
    return {"id": str(cid) if cid else None, "name": name, "arguments": args}


def _call_ids(turn: RecordedTurn) -> set[str]:
    ids = {str(c["id"]) for c in turn.tool_calls if c.get("id")}
    for _, delta in turn.chunks:
        if isinstance(delta, dict):
            ids.update(str(tc["id"]) for tc in as_list(delta.get("tool_calls"))
                       if isinstance(tc, dict) and tc.get("id"))
    return ids


def finish_run(name: str, source: str, turns: list[RecordedTurn], tools: list[RecordedTool],
               origin_note: str, notes: list[str]) -> RecordedRun | None:
    """The run of ``turns`` (any order) and ``tools``: each tool run on the turn whose call it
    answered (by call id), else on the last turn requested before it started; times made
    seconds since the run's first request or tool run (to the microsecond). None (with a
    note) without turns. Example::

        >>> turns = [RecordedTurn(101.0, 102.0), RecordedTurn(100.0, 100.5)]
        >>> run = finish_run("r", "chatlog", turns, [RecordedTool("f", 100.6, 100.9)], "x", [])
        >>> [(t.start, t.end, [x.start for x in t.tools]) for t in run.turns]
        [(0.0, 0.5, [0.6]), (1.0, 2.0, [])]
    """
    if not turns:
        notes.append(f"{origin_note}: no model turn; left out")
        return None
    turns.sort(key=lambda t: t.start)
    by_id = {cid: t for t in turns for cid in _call_ids(t)}
    early = 0
    for x in sorted(tools, key=lambda x: x.start):
        turn = by_id.get(x.call_id) if x.call_id else None
        if turn is None:
            before = [t for t in turns if t.start <= x.start]
            if not before:
                early += 1
                continue
            turn = before[-1]
        turn.tools.append(x)
    if early:
        notes.append(f"{origin_note}: {early} tool run(s) before the first model request; "
                     "left out")
    base = min([t.start for t in turns] + [x.start for x in tools])

    def rel(at: float) -> float:        # to the microsecond: what ISO times in traces hold
        return round(at - base, 6)

    for t in turns:
        t.start, t.end = rel(t.start), rel(t.end)
        t.chunks = [(rel(at), d) for at, d in t.chunks]
        t.tools.sort(key=lambda x: x.start)
        for x in t.tools:
            x.start, x.end = rel(x.start), rel(x.end)
    return RecordedRun(name, source, turns, origin_note=origin_note)
