"""Llama 3.x JSON tool calls: ``{"name": "...", "parameters": {...}}``, possibly several.

The message is a call only if it starts (after whitespace) with ``{`` or ``<|python_tag|>``;
otherwise all of it is plain text. Calls may be separated by ``;`` or newlines; text after the
last call is model text. Example::

    >>> p = Llama3JsonParser(id_prefix="d")
    >>> evs = p.feed('{"name": "f", "parameters": {"a": 1}}; {"name": "g", "parameters": {}}')
    >>> [type(e).__name__ for e in evs + p.close()]
    ['CallStarted', 'FieldDone', 'CallDone', 'CallStarted', 'CallDone', 'StreamDone']
"""

from __future__ import annotations

import re
from typing import Unpack

from .assembler import CallAssembler
from .base import ParserBase, ParserOptions

__all__ = ["Llama3JsonParser"]

_TAG = "<|python_tag|>"
_WS = re.compile(r"[ \t\n\r]*")
_SEP = re.compile(r"[ \t\n\r;]*")
_BEGIN, _TEXT, _SEPARATOR, _CALL = range(4)


class Llama3JsonParser(ParserBase):
    """Parse Llama 3.1/3.2/3.3 JSON tool calls (``"arguments"`` is accepted too).

    Keywords: see :class:`~conveyor_integrations.parsing.base.ParserBase`.

    >>> p = Llama3JsonParser(id_prefix="d")
    >>> p.feed("Hello {not a call}") + p.close()
    [Text(text='Hello {not a call}'), StreamDone(finish_reason=None)]
    """

    def __init__(self, **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self._state = _BEGIN
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
                pos += call.feed_to_end(text[pos:] if pos else text)
                if call.scanner.ended:
                    call.finish()
                    self._call = None
                    self._state = _SEPARATOR
            elif state == _SEPARATOR:
                pos = _SEP.match(text, pos).end()  # type: ignore[union-attr]
                if pos >= n:
                    break
                if text[pos] == "{":
                    index = self._next_index()
                    self._call = CallAssembler(self, index, self.new_id(index), wrapper=True)
                    self._state = _CALL
                else:
                    self._state = _TEXT
            elif state == _TEXT:
                self._text(text[pos:] if pos else text)
                pos = n
            else:  # _BEGIN: a call, or plain text?
                p = _WS.match(text, pos).end()  # type: ignore[union-attr]
                if p >= n:
                    self._hold = text[pos:]
                    break
                if text[p] == "{":
                    self._state = _SEPARATOR
                    pos = p
                elif text.startswith(_TAG, p):
                    self._state = _SEPARATOR
                    pos = p + len(_TAG)
                elif _TAG.startswith(text[p:]):
                    self._hold = text[pos:]
                    break
                else:
                    self._state = _TEXT

    def _close(self) -> None:
        if self._call is not None:
            self._call.fail("truncated call: JSON incomplete")
            self._call = None
        if self._state == _BEGIN:
            self._text(self._hold)
        self._hold = ""
