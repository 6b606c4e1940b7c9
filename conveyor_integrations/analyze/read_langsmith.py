"""LangSmith run exports as recorded runs.

Reads runs as LangSmith's API and SDK give them (``langsmith.schemas.Run`` fields: ``id``,
``name``, ``run_type``, ``start_time``/``end_time`` ISO times, ``parent_run_id``, ``trace_id``,
``dotted_order``, ``child_runs``, ``inputs``, ``outputs``, ``events``, ``error``,
``completion_tokens``): a list of runs, one root run with nested ``child_runs``, ``{"runs":
[...]}``, or JSON lines of runs. Each trace (``trace_id``, else the root of ``parent_run_id``)
is one run; each ``llm``/``chat_model`` run in it is one turn, each ``tool`` run a tool run,
on the turn whose call it answered (``extra.tool_call_id`` or the ``ToolMessage`` in its
``outputs``; else the last turn before it). Runs inside a tool or model run (a sub-agent used
as a tool) are not turns of their own.

A turn's message is its ``new_token`` events where they carry it (``kwargs.chunk``, a
``ChatGenerationChunk`` dict, plain or ``dumpd``: its message's content and
``tool_call_chunks`` become OpenAI delta dicts, format ``openai``; a stream without calls stays
text, for ``--tool-format``), else the final message in ``outputs`` (``generations``, or an
OpenAI ``choices`` response) decoded at the turn's own rate; so is a turn whose chunks lack the
calls its final message has (``run.dict()`` dumps a chunk's message as ``BaseMessage``, which
drops ``tool_call_chunks``). LangSmith keeps no token content (its tracer records the first
``new_token`` event only, its client strips ``kwargs``), so its exports are read from the final
message; an in-process ``BaseTracer`` (``RunCollectorCallbackHandler``) keeps every chunk.
Written by hand: no library turns these into per-turn chunk timelines. Example::

    >>> ai = {"type": "ai", "content": "", "tool_calls": [
    ...     {"name": "search", "args": {"q": "x"}, "id": "c1"}]}
    >>> llm = {"id": "a", "name": "ChatOpenAI", "run_type": "llm",
    ...        "start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-01T00:00:02Z",
    ...        "outputs": {"generations": [[{"message": ai}]]}}
    >>> tool = {"id": "b", "name": "search", "run_type": "tool", "extra": {"tool_call_id": "c1"},
    ...         "start_time": "2025-01-01T00:00:02.5Z", "end_time": "2025-01-01T00:00:03Z"}
    >>> root = {"id": "r", "name": "agent", "run_type": "chain", "child_runs": [llm, tool],
    ...         "start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-01T00:00:03Z"}
    >>> (run,) = runs_of_langsmith([("", root)])
    >>> turn = run.turns[0]
    >>> turn.tool_calls[0]["name"], turn.tools[0].call_id, turn.tools[0].duration_s, run.duration_s
    ('search', 'c1', 0.5, 3.0)
"""

from __future__ import annotations

from typing import Any

from .model import RecordedRun, RecordedTool, RecordedTurn
from .trace_io import Records, TraceError, as_dict, as_list, finish_run, norm_call, seconds, text_of

__all__ = ["runs_of_langsmith"]

_MODEL = ("llm", "chat_model")


def _unlc(obj: Any) -> Any:
    """A ``dumpd`` constructor's kwargs (``{"lc": 1, "kwargs": {...}}``), else ``obj``."""
    if isinstance(obj, dict) and obj.get("lc") and isinstance(obj.get("kwargs"), dict):
        return obj["kwargs"]
    return obj


def _flatten(records: Records, origin: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()

    def visit(where: str, run: Any, parent: str | None) -> None:
        if not isinstance(run, dict) or "run_type" not in run:
            raise TraceError(origin, f"{where or 'the file'}: not a LangSmith run "
                                     "(an object with run_type)")
        if run.get("id") is None or run.get("start_time") is None:
            raise TraceError(origin, f"{where or 'the file'}: run {run.get('name')!r} has no "
                                     f"{'id' if run.get('id') is None else 'start_time'}")
        rid = str(run["id"])
        if parent is not None and not run.get("parent_run_id"):
            run = {**run, "parent_run_id": parent}
        if rid not in seen:
            seen.add(rid)
            out.append((where, run))
        for i, child in enumerate(as_list(run.get("child_runs"))):
            visit(f"{where + ' ' if where else ''}child {i + 1} of {run.get('name')!r}",
                  child, rid)

    for where, rec in records:
        if isinstance(rec, dict) and "run_type" not in rec and isinstance(rec.get("runs"), list):
            for i, run in enumerate(rec["runs"]):
                visit(f"{where + ' ' if where else ''}runs[{i}]", run, None)
        else:
            visit(where, rec, None)
    return out


def _time(origin: str, where: str, run: dict[str, Any], key: str) -> float | None:
    value = run.get(key)
    if value is None:
        return None
    t = seconds(value)
    if t is None:
        raise TraceError(origin, f"{where or 'the file'}: run {run.get('name')!r}: {key} "
                                 f"{value!r} is not an ISO 8601 time")
    return t


def _message(outputs: Any) -> tuple[str | None, list[dict[str, Any]], int | None]:
    """The final message in an llm run's outputs: text, tool calls, output tokens."""
    if not isinstance(outputs, dict):
        return None, [], None
    msg: Any = None
    tokens: Any = None
    gens = outputs.get("generations")
    if isinstance(gens, list) and gens:
        first = gens[0][0] if isinstance(gens[0], list) and gens[0] else gens[0]
        if isinstance(first, dict):
            msg = _unlc(first.get("message")) or {"content": first.get("text")}
        usage = as_dict(outputs.get("llm_output")).get("token_usage") or {}
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    elif isinstance(outputs.get("choices"), list) and outputs["choices"]:     # OpenAI response
        choice = outputs["choices"][0]
        msg = choice.get("message") if isinstance(choice, dict) else None
        tokens = as_dict(outputs.get("usage")).get("completion_tokens")
    else:
        msg = _unlc(outputs.get("output", outputs.get("message")))
    if not isinstance(msg, dict):
        return None, [], None
    raw = as_list(msg.get("tool_calls")) or as_list(as_dict(msg.get("additional_kwargs")).get(
        "tool_calls"))
    calls = [c for c in (norm_call(x) for x in raw) if c is not None]
    usage = msg.get("usage_metadata")
    if isinstance(usage, dict) and usage.get("output_tokens"):
        tokens = usage["output_tokens"]
    return text_of(msg.get("content")), calls, tokens if isinstance(tokens, int) else None


def _delta(kwargs: Any, index: list[int]) -> Any:
    """One ``new_token`` event's piece: an OpenAI delta dict (from its chunk), its text, or
    None. ``index`` is ``[current call index, next]`` for chunks that carry none."""
    if not isinstance(kwargs, dict):
        return None
    chunk = _unlc(kwargs.get("chunk"))
    if not isinstance(chunk, dict):
        token = kwargs.get("token")
        return token if isinstance(token, str) else None
    msg = _unlc(chunk.get("message"))
    msg = msg if isinstance(msg, dict) else {"content": chunk.get("text")}
    delta: dict[str, Any] = {}
    if text := text_of(msg.get("content")):
        delta["content"] = text
    pieces = msg.get("tool_call_chunks")
    if not pieces:          # older OpenAI-style chunks keep the deltas in additional_kwargs
        pieces = as_list(as_dict(msg.get("additional_kwargs")).get("tool_calls"))
        if pieces:
            delta["tool_calls"] = pieces
            return delta
    calls = []
    for tc in as_list(pieces):
        if not isinstance(tc, dict):
            continue
        i = tc.get("index")
        if not isinstance(i, int):
            if tc.get("id") or tc.get("name"):
                index[:] = [index[1], index[1] + 1]
            i = index[0]
        else:
            index[:] = [i, max(index[1], i + 1)]
        fn: dict[str, Any] = {"arguments": tc.get("args") or ""}
        if tc.get("name"):
            fn["name"] = tc["name"]
        call: dict[str, Any] = {"index": i, "function": fn}
        if tc.get("id"):
            call.update(id=tc["id"], type="function")
        calls.append(call)
    if calls:
        delta["tool_calls"] = calls
    return delta


def _turn(origin: str, where: str, run: dict[str, Any], notes: list[str],
          flags: set[str]) -> RecordedTurn | None:
    start = _time(origin, where, run, "start_time")
    assert start is not None
    text, calls, tokens = _message(run.get("outputs"))
    extra = as_dict(run.get("extra"))
    meta = as_dict(extra.get("metadata"))
    tokens = tokens or run.get("completion_tokens") \
        or as_dict(meta.get("usage_metadata")).get("output_tokens")
    params = as_dict(extra.get("invocation_params"))
    model = params.get("model") or params.get("model_name") or meta.get("ls_model_name")
    chunks: list[tuple[float, Any]] = []
    index = [0, 0]
    for k, ev in enumerate(as_list(run.get("events"))):
        if not isinstance(ev, dict) or ev.get("name") != "new_token":
            continue
        piece = _delta(ev.get("kwargs"), index)
        if piece is None:
            flags.add("no_token_content")
            continue
        at = _time(origin, f"{where} events[{k}]".strip(), {**ev, "name": run.get("name")},
                   "time")
        if piece and at is not None:
            chunks.append((at, piece))
    end = _time(origin, where, run, "end_time")
    if end is None:
        if not chunks:
            notes.append(f"{origin}: {where or 'run'} {run.get('name')!r}: model run without "
                         "end_time; left out")
            return None
        end = chunks[-1][0]
    if any(isinstance(d, dict) for _, d in chunks):
        chunks = [(t, d if isinstance(d, dict) else {"content": d}) for t, d in chunks]
        if calls and not any(d.get("tool_calls") for _, d in chunks):
            flags.add("chunks_without_calls")
            chunks = []
    elif chunks and calls:                  # text tokens alone, the calls only in the message
        flags.add("chunks_without_calls")
        chunks = []
    if chunks and not calls and not any(isinstance(d, dict) and d.get("tool_calls")
                                        for _, d in chunks):   # text alone: calls may be in it
        chunks = [(t, d.get("content", "") if isinstance(d, dict) else d) for t, d in chunks]
    count = tokens if isinstance(tokens, int) and tokens > 0 else None
    if chunks:
        fmt = "openai" if isinstance(chunks[0][1], dict) else None
        return RecordedTurn(start, max(end, chunks[-1][0]), chunks=chunks, tool_format=fmt,
                            output_tokens=count, model=model)
    return RecordedTurn(start, end, text=text, tool_calls=calls,
                        tool_format="openai" if calls else None, output_tokens=count,
                        model=model)


def _tool(origin: str, where: str, run: dict[str, Any], notes: list[str]
          ) -> RecordedTool | None:
    start = _time(origin, where, run, "start_time")
    end = _time(origin, where, run, "end_time")
    assert start is not None
    if end is None:
        notes.append(f"{origin}: {where or 'run'} tool {run.get('name')!r} has no end_time; "
                     "left out")
        return None
    extra = as_dict(run.get("extra"))
    out = run.get("outputs")
    msg = _unlc(out.get("output")) if isinstance(out, dict) else None
    msg = msg if isinstance(msg, dict) else {}
    inputs = run.get("inputs")
    call_id = extra.get("tool_call_id") or msg.get("tool_call_id") \
        or (inputs.get("tool_call_id") if isinstance(inputs, dict) else None)
    args = dict(inputs) if isinstance(inputs, dict) and inputs and not (
        set(inputs) == {"input"} and isinstance(inputs["input"], str)) else None
    return RecordedTool(str(run.get("name") or "tool"), start, end,
                        call_id=str(call_id) if call_id else None, args=args,
                        error=bool(run.get("error")) or msg.get("status") == "error")


def runs_of_langsmith(records: Records, origin: str = "langsmith",
                      notes: list[str] | None = None) -> list[RecordedRun]:
    """The recorded runs of LangSmith run ``records`` (see the module's docstring), one per
    trace in first-seen order; :class:`~.trace_io.TraceError` names the record that is not a
    run. ``notes`` (if given) gets what was left out or read from the final message only."""
    notes = notes if notes is not None else []
    runs = _flatten(records, origin)
    by_id = {str(r["id"]): r for _, r in runs}

    def chain(run: dict[str, Any]) -> list[dict[str, Any]]:
        up, seen = [], {str(run["id"])}
        while (pid := run.get("parent_run_id")) and str(pid) in by_id and str(pid) not in seen:
            seen.add(str(pid))
            run = by_id[str(pid)]
            up.append(run)
        return up

    traces: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for where, run in runs:
        ups = chain(run)
        key = str(run.get("trace_id") or (ups[-1] if ups else run)["id"])
        if run["run_type"] in (*_MODEL, "tool") \
                and any(u["run_type"] in (*_MODEL, "tool") for u in ups):
            continue                          # inside a tool (a sub-agent) or a model run
        traces.setdefault(key, []).append((where, run))
    flags: set[str] = set()
    out: list[RecordedRun] = []
    for key, members in traces.items():
        turns: list[RecordedTurn] = []
        tools: list[RecordedTool] = []
        members.sort(key=lambda m: (_time(origin, m[0], m[1], "start_time") or 0.0,
                                    str(m[1].get("dotted_order") or "")))
        for where, run in members:
            if run["run_type"] in _MODEL:
                if (turn := _turn(origin, where, run, notes, flags)) is not None:
                    turns.append(turn)
            elif run["run_type"] == "tool" and (tool := _tool(origin, where, run, notes)):
                tools.append(tool)
        root = by_id.get(key) or next((r for _, r in runs if not r.get("parent_run_id")
                                       and str(r.get("trace_id") or r["id"]) == key), None)
        name = f"{as_dict(root).get('name') or 'trace'} {key[:8]}"
        run_out = finish_run(name, "langsmith", turns, tools, f"{origin} trace {key}", notes)
        if run_out is not None:
            out.append(run_out)
    if "no_token_content" in flags:
        notes.append(f"{origin}: new_token events carry no content (LangSmith keeps only the "
                     "first token's time): messages decoded at each turn's average rate")
    if "chunks_without_calls" in flags:
        notes.append(f"{origin}: streamed chunks carry no tool calls while the final message "
                     "has them (a lossy export?): those turns read from the final message")
    return out
