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
from typing import Any, Unpack

from ..events import CallMalformed, Event
from .assembler import CallAssembler
from .base import ParserBase, ParserOptions

__all__ = ["OpenAIDeltaParser"]

_WS = re.compile(r"[ \t\n\r]*")
_NO_KEY = object()


def _get(obj: Any, key: str) -> Any:
    if type(obj) is dict:
        return obj.get(key)
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


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
    Keywords: see :class:`~conveyor_integrations.parsing.base.ParserBase`.

    >>> p = OpenAIDeltaParser(id_prefix="d", tools=["search"])
    >>> p.feed({"tool_calls": [{"index": 0, "function": {"name": "rm"}}]})[0].reason
    "unknown tool 'rm'"
    """

    def __init__(self, **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self._key: object = _NO_KEY
        self._done_keys: set[object] = set()
        self._cur: _Slot | None = None

    def feed(self, delta: str | Mapping[str, Any] | Any) -> list[Event]:
        """Take one delta (dict, ``ChoiceDelta``-like object, or content string)."""
        if self._closed:
            return []
        if isinstance(delta, str):
            self._text(delta)
        else:
            content = _get(delta, "content")
            if isinstance(content, str):
                self._text(content)
            for tc in _get(delta, "tool_calls") or ():
                self._tool_delta(tc)
        return self._take()

    def _tool_delta(self, tc: Any) -> None:
        key = _get(tc, "index")
        if key is None:
            key = 0 if self._key is _NO_KEY else self._key
        if key != self._key:
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
        if isinstance(args, str) and args and slot.call is not None:
            self._args(slot.call, args)

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
