"""Hermes / Qwen tool calls: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

Text outside the tags is model text. Tags may be split anywhere between deltas; text that only
looks like the start of a tag (``<tool_`` then ``box>``) comes out as plain text. Example::

    >>> p = HermesParser(id_prefix="d")
    >>> evs = p.feed('Sure.<tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call>')
    >>> [type(e).__name__ for e in evs + p.close()]
    ['Text', 'CallStarted', 'FieldDone', 'CallDone', 'StreamDone']
"""

from __future__ import annotations

import re
from typing import Unpack

from .assembler import CallAssembler
from .base import ParserBase, ParserOptions, tag_prefix_at_end

__all__ = ["HermesParser"]

_OPEN = "<tool_call>"
_CLOSE = "</tool_call>"
_WS = re.compile(r"[ \t\n\r]*")
_TEXT, _CALL, _AFTER, _SKIP, _SKIPJSON = range(5)


class HermesParser(ParserBase):
    """Parse ``<tool_call>`` JSON blocks (Hermes, Qwen 2.5/3, many vLLM chat templates).

    ``"parameters"`` is accepted for ``"arguments"``; the name may come after the arguments
    (the call's events then wait until it is known). A missing ``</tool_call>`` at
    ``close()`` makes the call malformed. Keywords: see :class:`ParserBase`.

    >>> p = HermesParser(id_prefix="d", tools=["search"])
    >>> [e.reason for e in p.feed('<tool_call>{"name": "rm", "arguments": {}}</tool_call>')]
    ["unknown tool 'rm'"]
    """

    def __init__(self, **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self._state = _TEXT
        self._hold = ""
        self._call: CallAssembler | None = None

    def _feed_text(self, text: str) -> None:
        if self._hold:
            text = self._hold + text
            self._hold = ""
        pos = 0
        n = len(text)
        while pos < n:
            state = self._state
            if state == _CALL:
                call = self._call
                assert call is not None
                pos += call.feed(text[pos:] if pos else text)
                if call.finished:
                    if call.scanner.error is None and not call.scanner.ended:
                        call.skip()  # refused but well formed: skip the JSON by its brackets
                        self._state = _SKIPJSON
                    else:
                        self._call = None
                        self._state = _SKIP
                elif call.scanner.done:
                    self._state = _AFTER
            elif state == _SKIPJSON:
                call = self._call
                assert call is not None
                pos += call.feed(text[pos:] if pos else text)
                if call.scanner.ended:
                    self._call = None
                    self._state = _SKIP
            elif state == _TEXT:
                i = text.find(_OPEN, pos)
                if i >= 0:
                    self._text(text[pos:i])
                    pos = i + len(_OPEN)
                    index = self._next_index()
                    self._call = CallAssembler(self, index, self.new_id(index), wrapper=True)
                    self._state = _CALL
                    continue
                j = tag_prefix_at_end(text, pos, _OPEN)
                if j >= 0:
                    self._hold = text[j:]
                    self._text(text[pos:j])
                else:
                    self._text(text[pos:] if pos else text)
                pos = n
            elif state == _AFTER:
                pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
                if pos >= n:
                    break
                call = self._call
                assert call is not None
                if text.startswith(_CLOSE, pos):
                    pos += len(_CLOSE)
                    call.finish()
                    self._call = None
                    self._state = _TEXT
                elif n - pos < len(_CLOSE) and (_CLOSE.startswith(text[pos:])
                                                or _OPEN.startswith(text[pos:])):
                    self._hold = text[pos:]
                    pos = n
                elif text.startswith(_OPEN, pos):     # the model forgot </tool_call>
                    call.fail("missing </tool_call>")
                    self._call = None
                    self._state = _TEXT
                else:
                    call.fail("unexpected text after the call's JSON (expected </tool_call>)")
                    self._call = None
                    self._state = _SKIP
            else:  # _SKIP: a malformed call; drop text up to its closing tag (or a new call)
                i = text.find(_CLOSE, pos)
                k = text.find(_OPEN, pos, i if i >= 0 else n)
                if k >= 0:
                    pos = k
                    self._state = _TEXT
                    continue
                if i >= 0:
                    pos = i + len(_CLOSE)
                    self._state = _TEXT
                    continue
                j = max(tag_prefix_at_end(text, pos, _CLOSE), tag_prefix_at_end(text, pos, _OPEN))
                if j >= 0:
                    self._hold = text[j:]
                pos = n

    def _close(self) -> None:
        call = self._call
        if call is not None and not call.finished:
            if call.scanner.done:
                call.fail("missing </tool_call>")
            else:
                call.fail("truncated call: JSON incomplete and no </tool_call>")
            self._call = None
        elif self._state == _TEXT:
            self._text(self._hold)
        self._hold = ""
