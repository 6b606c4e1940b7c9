"""The interface every tool-call parser implements, and the machinery the formats share.

A parser is fed a model's stream delta by delta and returns the events each delta made
certain; ``close()`` flushes and ends with ``StreamDone``. Example::

    >>> from conveyor_integrations.parsing import get_parser
    >>> p = get_parser("hermes", id_prefix="t")
    >>> [type(e).__name__ for e in p.feed('<tool_call>{"name": "f", "arguments": {"x": 1}}')]
    ['CallStarted', 'FieldDone']
    >>> [type(e).__name__ for e in p.feed("</tool_call>")] + [type(e).__name__ for e in p.close()]
    ['CallDone', 'StreamDone']
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from ..events import Event, StreamDone, Text

__all__ = ["UNITS", "ParserBase", "ParserOptions", "ToolCallParser", "Unit", "tag_prefix_at_end"]

Unit = Literal["line", "statement", "raw"]
UNITS: frozenset[str] = frozenset({"line", "statement", "raw"})


class ParserOptions(TypedDict, total=False):
    """The keywords every parser takes (see :class:`ParserBase`).

    >>> opts: ParserOptions = {"tools": ["search"], "id_prefix": "t"}
    """

    tools: Collection[str] | None
    streams: Mapping[str, Mapping[str, str]] | None
    max_arg_chars: int
    max_depth: int
    id_prefix: str | None


@runtime_checkable
class ToolCallParser(Protocol):
    """Turns one model message, fed delta by delta, into :mod:`~conveyor_integrations.events`.

    >>> from conveyor_integrations.parsing import get_parser
    >>> isinstance(get_parser("openai"), ToolCallParser)
    True
    """

    def feed(self, delta: str | Mapping[str, Any]) -> list[Event]:
        """Take the next delta (text, or an OpenAI-style delta dict); return the new events."""
        ...

    def close(self) -> list[Event]:
        """End of the message: flush, fail unterminated calls, end with ``StreamDone()``."""
        ...


def tag_prefix_at_end(s: str, start: int, tag: str) -> int:
    """Index where a proper prefix of ``tag`` ends ``s`` (at or after ``start``), else -1.

    Only ``tag``'s first character may start a prefix, so that text is held back only while
    it can still become the tag.

    >>> tag_prefix_at_end("hi <tool_c", 0, "<tool_call>"), tag_prefix_at_end("a<b", 0, "<tool>")
    (3, -1)
    """
    j = s.rfind(tag[0], max(start, len(s) - len(tag) + 1))
    if j >= 0 and tag.startswith(s[j:]):
        return j
    return -1


def _content_of(delta: Any) -> str | None:
    if isinstance(delta, Mapping):
        content = delta.get("content")
    else:
        content = getattr(delta, "content", None)
    return content if isinstance(content, str) else None


def _nothing() -> None:
    return None


class ParserBase:
    """Shared constructor keywords and event plumbing of the built-in parsers.

    ``tools``: known tool names (a call of another name is malformed); ``streams``: tool ->
    {top-level string field -> "line" | "statement" | "raw"}, fields whose text is streamed
    as ``TextChunk`` pieces; ``max_arg_chars``: longer arguments are malformed and no longer
    buffered; ``max_depth``: deeper nesting is malformed; ``id_prefix``: ids of calls without
    a server id are ``call_{id_prefix}_{index}`` (default: 8 random hex digits per parser).

    Subclasses implement ``_feed_text(text)`` and ``_close()`` and append events with
    ``self._emit``. No exception escapes :meth:`feed` or :meth:`close`: should one be raised
    inside (a parser bug on hostile input), the open call is reported as ``CallMalformed``
    (``_abort``) and the rest of the message is plain text. Example::

        >>> from conveyor_integrations.parsing import HermesParser
        >>> HermesParser(id_prefix="x").new_id(3)
        'call_x_3'
    """

    def __init__(self, *, tools: Collection[str] | None = None,
                 streams: Mapping[str, Mapping[str, str]] | None = None,
                 max_arg_chars: int = 8_000_000, max_depth: int = 256,
                 id_prefix: str | None = None) -> None:
        if max_arg_chars < 1 or max_depth < 1:
            raise ValueError("max_arg_chars and max_depth must be positive")
        self.tools: frozenset[str] | None = frozenset(tools) if tools is not None else None
        self.streams: dict[str, dict[str, str]] = {}
        for tool, fields in (streams or {}).items():
            for field, unit in fields.items():
                if unit not in UNITS:
                    raise ValueError(f"unknown unit {unit!r} for {tool}.{field}; "
                                     f"use one of {sorted(UNITS)}")
            self.streams[tool] = dict(fields)
        self.max_arg_chars = max_arg_chars
        self.max_depth = max_depth
        self.id_prefix = id_prefix if id_prefix is not None else os.urandom(4).hex()
        self._events: list[Event] = []
        self._emit = self._events.append
        self._ncalls = 0
        self._closed = False

    def new_id(self, index: int) -> str:
        """The id of call ``index`` when the stream gives none."""
        return f"call_{self.id_prefix}_{index}"

    def _next_index(self) -> int:
        index = self._ncalls
        self._ncalls += 1
        return index

    def _text(self, text: str) -> None:
        if text:
            self._emit(Text(text))

    def _take(self) -> list[Event]:
        if not self._events:
            return []
        out = self._events.copy()
        self._events.clear()
        return out

    def feed(self, delta: str | Mapping[str, Any]) -> list[Event]:
        """Take the next delta: text, or a dict (or object) whose ``content`` is the text."""
        if self._closed:
            return []
        text = delta if isinstance(delta, str) else _content_of(delta)
        if text:
            try:
                self._feed_text(text)
            except Exception as exc:  # noqa: BLE001 - never take the stream down
                self._broken(exc)
        return self._take()

    def close(self) -> list[Event]:
        """End of the message; the last event is ``StreamDone()``. Later calls return []."""
        if self._closed:
            return []
        self._closed = True
        try:
            self._close()
        except Exception as exc:  # noqa: BLE001 - never take the stream down
            self._broken(exc)
        self._emit(StreamDone())
        return self._take()

    def _broken(self, exc: Exception) -> None:
        """After an internal error: fail the open call; the rest of the message is text."""
        try:
            self._abort(f"parser error on malformed input ({type(exc).__name__})")
        except Exception:  # noqa: BLE001, S110 - the state is unknown; report what we can
            pass
        setattr(self, "_feed_text", self._text)  # noqa: B010 - replaces the bound method
        setattr(self, "_close", _nothing)  # noqa: B010

    def _abort(self, reason: str) -> None:
        """Report the call in progress, if any, as ``CallMalformed(reason)``."""
        for value in vars(self).values():     # a CallAssembler (duck-typed: no import cycle)
            if getattr(value, "finished", True) is False and callable(getattr(value, "fail", None)):
                value.fail(reason)

    def _feed_text(self, text: str) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError
