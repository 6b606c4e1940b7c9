"""The traces ``conveyor analyze`` reads, each file's kind chosen by its content.

A file is JSON or JSON lines (:func:`~.trace_io.load_records`); its records say what it is:

- ``langsmith``: LangSmith runs (objects with ``run_type``, or ``{"runs": [...]}``),
  :mod:`.read_langsmith`;
- ``otlp``: OpenTelemetry spans as OTLP JSON (objects with ``resourceSpans``), :mod:`.read_otlp`;
- ``chatlog``: chat-completion logs (lines with ``request`` and ``chunks`` or ``response``),
  :mod:`.read_chatlog`;
- ``results``: ``conveyor bench``'s ``results.json`` (an object with ``records``),
  :mod:`.read_results`.

A file that is none of these, or not what ``kind`` says, or wrong inside, raises
:class:`TraceError` naming the file, the line or record, and what is wrong (never a traceback).
Example::

    >>> import json, pathlib, tempfile
    >>> line = {"request": {"model": "m"}, "started": 0.0, "ended": 1.0,
    ...         "response": {"choices": [{"message": {"content": "hello"}}]}}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d, "log.jsonl")
    ...     _ = p.write_text(json.dumps(line) + "\\n")
    ...     [(r.source, r.turns[0].text) for r in read_traces([p])]
    [('chatlog', 'hello')]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .model import RecordedRun
from .trace_io import Records, TraceError, load_records

__all__ = ["KINDS", "TraceError", "kind_of", "read_trace", "read_traces"]

KINDS = ("auto", "langsmith", "otlp", "chatlog", "results")

_WHAT = {"langsmith": "a LangSmith run (an object with run_type)",
         "otlp": "OTLP JSON (an object with resourceSpans)",
         "chatlog": "a chat-log line (an object with request and chunks or response)",
         "results": "conveyor bench's results.json (an object with records)"}


def kind_of(record: Any) -> str | None:
    """The kind of trace one record belongs to, None if none.

    >>> kind_of({"resourceSpans": []}), kind_of({"run_type": "llm"}), kind_of([1])
    ('otlp', 'langsmith', None)
    """
    if not isinstance(record, dict):
        return None
    if "resourceSpans" in record:
        return "otlp"
    if "run_type" in record or isinstance(record.get("runs"), list):
        return "langsmith"
    if "request" in record and ("chunks" in record or "response" in record):
        return "chatlog"
    if "records" in record:
        return "results"
    return None


def _keys(record: Any) -> str:
    if isinstance(record, dict):
        keys = sorted(map(str, record))
        return "keys " + ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
    return f"a JSON {type(record).__name__}"


def _kind(path: Path, records: Records, kind: str) -> str:
    """The file's kind: ``kind``, or the first record's that has one. A record of another
    kind is an error here; one of no kind is left to the reader, whose error is specific."""
    found = [(where, kind_of(r), r) for where, r in records]
    if kind == "auto":
        where, first, rec = next((f for f in found if f[1] is not None), found[0])
        if first is None:
            raise TraceError(path, f"{where or 'the file'}: not a trace this reads: expected "
                                   "a LangSmith run export, OTLP JSON spans, a chat-completion "
                                   f"log or conveyor bench's results.json (found {_keys(rec)})")
        kind = first
        for where, k, _ in found:
            if k is not None and k != kind:
                raise TraceError(path, f"{where}: {k} among {kind} records; one kind per file")
        return kind
    for where, k, _ in found:
        if k is not None and k != kind:
            raise TraceError(path, f"{where or 'the file'}: not {_WHAT[kind]}, as --kind "
                                   f"{kind} says (it looks like {k})")
    return kind


def _results(path: Path, records: Records, notes: list[str]) -> list[RecordedRun]:
    # --- results.json: conveyor bench's own records, read by .read_results -----------------
    from .read_results import runs_of_results

    if len(records) != 1 or not isinstance(records[0][1], dict):
        raise TraceError(path, "a results.json is one JSON object with 'records'")
    try:
        runs, more = runs_of_results(records[0][1], origin=str(path))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise TraceError(path, f"not a results.json this reads ({type(exc).__name__}: "
                               f"{reason})") from None
    notes.extend(more)
    return runs


def read_trace(path: str | Path, kind: str = "auto",
               notes: list[str] | None = None) -> list[RecordedRun]:
    """The recorded runs in one file (see the module's docstring); ``notes`` (if given) gets
    what the reader left out or could only approximate.

    >>> read_trace("no/such/trace.json")
    Traceback (most recent call last):
    ...
    conveyor_integrations.analyze.trace_io.TraceError: no/such/trace.json: no such file
    """
    if kind not in KINDS:
        raise ValueError(f"unknown trace kind {kind!r}; known: {', '.join(KINDS)}")
    p = Path(path)
    notes = notes if notes is not None else []
    records = load_records(p)
    found = _kind(p, records, kind)
    if found == "results":
        return _results(p, records, notes)
    if found == "langsmith":
        from .read_langsmith import runs_of_langsmith

        return runs_of_langsmith(records, str(p), notes)
    if found == "otlp":
        from .read_otlp import runs_of_otlp

        return runs_of_otlp(records, str(p), notes)
    from .read_chatlog import runs_of_chatlog

    return runs_of_chatlog(records, str(p), notes)


def read_traces(paths: Sequence[str | Path], kind: str = "auto",
                notes: list[str] | None = None) -> list[RecordedRun]:
    """The recorded runs of every file in ``paths``, in order (:func:`read_trace` each)."""
    out: list[RecordedRun] = []
    for path in paths:
        out.extend(read_trace(path, kind, notes))
    return out
