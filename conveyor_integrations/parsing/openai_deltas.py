"""OpenAI chat-completion stream deltas (``choices[0].delta``) with ``tool_calls`` fragments.

Each fragment names a call by its ``index``; the id and name usually come first, then the
``arguments`` JSON in pieces. A new index means the previous call is complete. Example::

    >>> p = OpenAIDeltaParser(id_prefix="d")
    >>> tc = {"index": 0, "id": "call_abc", "type": "function",
    ...       "function": {"name": "search", "arguments": '{"q": "pa'}}
    >>> [type(e).__name__ for e in p.feed({"content": None, "tool_calls": [tc]})]
    ['CallStarted']
    >>> tc2 = {"index": 0, "function": {"arguments": 'ris"}'}}
    >>> [type(e).__name__ for e in p.feed({"tool_calls": [tc2]}) + p.close()]
    ['FieldDone', 'CallDone', 'StreamDone']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Unpack

from ..events import CallMalformed, Event, StreamDone, Text
from .assembler import CallAssembler
from .base import ParserBase, ParserOptions, ToolCallParser

__all__ = ["OpenAIDeltaParser"]

_WS = re.compile(r"[ \t\n\r]*")
_NO_KEY = object()


_PLAIN = (str, bytes, bytearray, int, float, complex, list, tuple, set, frozenset)


def _get(obj: Any, key: str) -> Any:
    if type(obj) is dict:
        return obj.get(key)
    if obj is None or isinstance(obj, _PLAIN):   # ``"x".index`` is not a field
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


class _Malformed(Exception):
    pass


class _Slot:
    __slots__ = ("buf", "buflen", "call", "failed", "id", "index")

    def __init__(self, index: int) -> None:
        self.index = index
        self.id: str | None = None
        self.call: CallAssembler | None = None
        self.buf: list[str] = []
        self.buflen = 0
        self.failed = False


class OpenAIDeltaParser(ParserBase):
    """Parse OpenAI-style streamed deltas: ``{"content": ..., "tool_calls": [...]}``.

    Also takes a plain string (content) or an object with those attributes (the ``openai``
    package's ``ChoiceDelta``). The server's call id is kept; empty arguments mean ``{}``.
    A malformed delta (``tool_calls`` not a list, an ``index`` that is not an int, ``arguments``
    that are not a string...) never raises: the call it belongs to (or a new index, if none is
    open) is reported as ``CallMalformed``; a wrongly typed ``content`` is ignored.
    Keywords: see :class:`~conveyor_integrations.parsing.base.ParserBase`.

    >>> p = OpenAIDeltaParser(id_prefix="d", tools=["search"])
    >>> p.feed({"tool_calls": [{"index": 0, "function": {"name": "rm"}}]})[0].reason
    "unknown tool 'rm'"

    ``text_parser``: a parser of a raw format (say Hermes) that reads the ``content`` text, for
    a server that leaves some calls in the text (no tool parser, or one that did not recognise
    them): its calls are numbered after and between the ``tool_calls`` ones, and
    :attr:`text_calls` counts them.

    >>> from conveyor_integrations.parsing import HermesParser
    >>> p = OpenAIDeltaParser(id_prefix="d", text_parser=HermesParser(id_prefix="t"))
    >>> evs = p.feed({"content": '<tool_call>{"name": "f", "arguments": {}}</tool_call>'})
    >>> [(type(e).__name__, e.index) for e in evs], p.text_calls
    ([('CallStarted', 0), ('CallDone', 0)], 1)
    """

    def __init__(self, *, text_parser: ToolCallParser | None = None,
                 **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self._key: object = _NO_KEY
        self._done_keys: set[object] = set()
        self._cur: _Slot | None = None
        self._inner = text_parser
        self._inner_index: dict[int, int] = {}
        self.text_calls = 0
        """Calls read from the content text by ``text_parser``."""

    def _text(self, text: str) -> None:
        if self._inner is None:
            if text:
                self._emit(Text(text))
        elif text:
            self._relay(self._inner.feed(text))

    def _relay(self, events: list[Event]) -> None:
        """The text parser's events, its calls renumbered among this stream's."""
        emit, index_of = self._emit, self._inner_index
        for e in events:
            if isinstance(e, Text):
                emit(e)
            elif not isinstance(e, StreamDone):
                i = e.index
                g = index_of.get(i)
                if g is None:
                    g = index_of[i] = self._next_index()
                    self.text_calls += 1
                emit(replace(e, index=g))

    def feed(self, delta: str | Mapping[str, Any] | Any) -> list[Event]:
        """Take one delta (dict, ``ChoiceDelta``-like object, or content string)."""
        if self._closed:
            return []
        try:
            if isinstance(delta, str):
                self._text(delta)
            else:
                content = _get(delta, "content")
                if isinstance(content, str):
                    self._text(content)
                tool_calls = _get(delta, "tool_calls")
                if tool_calls:
                    if type(tool_calls) is not list and not isinstance(tool_calls,
                                                                       (list, tuple)):
                        raise _Malformed("tool_calls is not a list")
                    for tc in tool_calls:
                        self._tool_delta(tc)
        except Exception as exc:  # noqa: BLE001 - never take the stream down
            self._abort(f"malformed tool_calls delta: {exc}" if isinstance(exc, _Malformed)
                        else f"parser error on a malformed delta ({type(exc).__name__})")
        return self._take()

    def _abort(self, reason: str) -> None:
        """Fail the call in progress (or, if none, report a new index) with ``reason``."""
        slot = self._cur
        if slot is None:                          # no call to blame: report a new index
            self._emit(CallMalformed(self._next_index(), None, None, reason))
            return
        if slot.failed:
            return
        slot.failed = True
        slot.buf = []
        if slot.call is not None:
            slot.call.fail(reason)
        else:
            self._emit(CallMalformed(slot.index, slot.id or self.new_id(slot.index), None,
                                     reason))

    def _tool_delta(self, tc: Any) -> None:
        key = _get(tc, "index")
        if key is None:
            key = 0 if self._key is _NO_KEY else self._key
        if key != self._key:
            if type(key) is not int:              # checked only when the index changes
                raise _Malformed(f"index must be an integer, not {type(key).__name__}")
            if key in self._done_keys:
                return  # a late fragment of a call already finished
            self._finish()
            self._key = key
            self._cur = _Slot(self._next_index())
        slot = self._cur
        assert slot is not None
        cid = _get(tc, "id")
        if isinstance(cid, str) and cid and slot.id is None:
            slot.id = cid
        fn = _get(tc, "function")
        name = _get(fn, "name")
        args = _get(fn, "arguments")
        if slot.failed:
            return
        if slot.call is None:
            if isinstance(name, str) and name:
                slot.call = CallAssembler(self, slot.index, slot.id or self.new_id(slot.index),
                                          name=name)
                if slot.buf:
                    buffered = "".join(slot.buf)
                    slot.buf = []
                    self._args(slot.call, buffered)
            elif isinstance(args, str) and args:
                slot.buf.append(args)
                slot.buflen += len(args)
                if slot.buflen > self.max_arg_chars:
                    slot.failed = True
                    slot.buf = []
                    self._emit(CallMalformed(slot.index, slot.id or self.new_id(slot.index),
                                             None, f"arguments exceed {self.max_arg_chars}"
                                             " characters"))
                return
        if isinstance(args, str):
            if args and slot.call is not None:
                self._args(slot.call, args)
        elif args is not None:
            raise _Malformed(f"arguments must be a string, not {type(args).__name__}")

    def _args(self, call: CallAssembler, text: str) -> None:
        if call.finished:
            return
        if call.scanner.done:
            rest = text
        else:
            used = call.feed(text)
            if call.finished or not call.scanner.done:
                return
            rest = text[used:]
        if rest and _WS.fullmatch(rest) is None:
            call.fail("unexpected text after the arguments JSON")

    def _finish(self) -> None:
        slot = self._cur
        if slot is None:
            return
        self._done_keys.add(self._key)
        self._cur = None
        if slot.failed:
            return
        if slot.call is None:
            self._emit(CallMalformed(slot.index, slot.id or self.new_id(slot.index), None,
                                     "missing function name"))
        else:
            slot.call.finish(empty_is_ok=True)

    def _close(self) -> None:
        self._finish()
        if self._inner is not None:
            self._relay(self._inner.close())
