"""The transcripts file of ``conveyor bench --transcripts``: read and checked line by line.

The format is in :mod:`.user_transcripts`. Checked by hand (a ``json.loads`` per line, then each
key), so that every error names its line and what is wrong, before any tool runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ..events import CallDone, CallMalformed
from ..parsing import PARSERS, get_parser

__all__ = ["ToolsError", "TranscriptError", "UserBenchError", "UserTranscript",
           "load_transcripts"]

_KEYS = ("name", "text", "deltas", "tools", "tool_format")


class UserBenchError(ValueError):
    """The transcripts file or the tools are not usable; nothing ran."""


class TranscriptError(UserBenchError):
    """A problem of the transcripts file: ``str()`` is ``FILE:LINE: reason``."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: {reason}" if line is not None else f"{path}: {reason}")


class ToolsError(UserBenchError):
    """A problem of ``MODULE:ATTR`` or of the tools it names."""


@dataclass(frozen=True, slots=True)
class UserTranscript:
    """One recorded message of the file."""

    line: int
    name: str
    """The line's ``name``, or ``line N``."""
    transcript: str | tuple[dict[str, Any], ...]
    """The text, or the deltas (what ``Replay`` replays)."""
    tools: tuple[str, ...]
    tool_format: str
    calls: tuple[str, ...]
    """The tools it calls, in order (the file is parsed once when it is loaded)."""


def _field(obj: dict[str, Any], key: str, fail: Callable[[str], NoReturn]
           ) -> str | tuple[dict[str, Any], ...]:
    value = obj.get(key)
    if key == "text":
        if not (isinstance(value, str) and value):
            fail('"text" must be a non-empty string')
        return value
    if not (isinstance(value, list) and value):
        fail('"deltas" must be a non-empty list of OpenAI chunk delta objects')
    for i, d in enumerate(value):
        if not isinstance(d, dict):
            fail(f'"deltas"[{i}] is {type(d).__name__}, not a delta object')
    return tuple(value)


def _parse_line(path: str | Path, n: int, raw: str) -> UserTranscript:
    def fail(reason: str) -> NoReturn:
        raise TranscriptError(path, n, reason)

    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TranscriptError(path, n, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        fail(f"a line is a JSON object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_KEYS))
    if unknown:
        fail(f"unknown keys {unknown}; a line has {', '.join(_KEYS)}")
    if ("text" in obj) == ("deltas" in obj):
        fail('give either "text" (the model\'s text) or "deltas" (OpenAI chunk deltas)'
             + (", not both" if "text" in obj else ""))
    kind = "text" if "text" in obj else "deltas"
    transcript = _field(obj, kind, fail)
    tools = obj.get("tools")
    if not (isinstance(tools, list) and all(isinstance(t, str) and t for t in tools)):
        fail('"tools" must list the names of the tools this message may call'
             if tools is not None else '"tools" is missing: list the tools it may call')
    name = obj.get("name", f"line {n}")
    if not isinstance(name, str) or not name:
        fail('"name" must be a non-empty string')
    fmt = obj.get("tool_format", "hermes" if kind == "text" else "openai")
    if fmt not in PARSERS:
        fail(f'"tool_format" {fmt!r} is unknown; known: {", ".join(sorted(PARSERS))}')
    parser = get_parser(fmt)
    pieces = [transcript] if isinstance(transcript, str) else list(transcript)
    events = [ev for d in pieces for ev in parser.feed(d)] + parser.close()
    calls = []
    for ev in events:
        if isinstance(ev, CallMalformed):
            fail(f"call {ev.index} ({ev.name or 'no name'}) is malformed in {fmt}: {ev.reason}")
        if isinstance(ev, CallDone):
            if ev.name not in tools:
                fail(f'call {ev.index} calls {ev.name!r}, which is not in its "tools" {tools}')
            calls.append(ev.name)
    return UserTranscript(n, name, transcript, tuple(tools), fmt, tuple(calls))


def load_transcripts(path: str | Path) -> list[UserTranscript]:
    """The recorded messages of the JSON-lines file ``path``, checked (see the module's
    docstring); raises :class:`TranscriptError` naming the line. Example::

        >>> import pathlib, tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(folder.name) / "m.jsonl"
        >>> _ = path.write_text('# recorded on Monday\\n'
        ...     '{"text": "<tool_call>{\\\\"name\\\\": \\\\"f\\\\", \\\\"arguments\\\\": {}}'
        ...     '</tool_call>", "tools": ["f"]}\\n')
        >>> [(t.name, t.tool_format, t.calls) for t in load_transcripts(path)]
        [('line 2', 'hermes', ('f',))]
        >>> _ = path.write_text('{"text": "hi", "deltas": [], "tools": []}\\n')
        >>> try:
        ...     load_transcripts(path)
        ... except TranscriptError as exc:
        ...     print(exc.line, exc.reason)
        1 give either "text" (the model's text) or "deltas" (OpenAI chunk deltas), not both
        >>> folder.cleanup()
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TranscriptError(path, None, f"cannot read it: {exc}") from None
    out: list[UserTranscript] = []
    names: dict[str, int] = {}
    for n, raw in enumerate(lines, 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        t = _parse_line(path, n, raw)
        if t.name in names:
            raise TranscriptError(path, n, f"name {t.name!r} is also line {names[t.name]}'s")
        names[t.name] = n
        out.append(t)
    if not out:
        raise TranscriptError(path, None, "no recorded messages in it")
    return out
