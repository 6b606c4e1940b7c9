"""Mistral tool calls: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``.

The newer ``[TOOL_CALLS]name[ARGS]{...}`` form (optionally ``name[CALL_ID]id[ARGS]{...}``) is
accepted too, and so are the two forms vLLM's Mistral parser also takes: one bare call object,
``[TOOL_CALLS]{"name": ..., "arguments": {...}}``, and ``[TOOL_CALLS]name{...}`` without
``[ARGS]``. Text before ``[TOOL_CALLS]`` is model text. Example::

    >>> p = MistralParser(id_prefix="d")
    >>> evs = p.feed('Ok [TOOL_CALLS][{"name": "f", "arguments": {"a": 1}}]')
    >>> [type(e).__name__ for e in evs + p.close()]
    ['Text', 'CallStarted', 'FieldDone', 'CallDone', 'StreamDone']
"""

from __future__ import annotations

import re
from typing import Unpack

from ..events import CallMalformed
from .assembler import CallAssembler
from .base import ParserBase, ParserOptions, tag_prefix_at_end

__all__ = ["MistralParser"]

_TAG = "[TOOL_CALLS]"
_WS = re.compile(r"[ \t\n\r]*")
_NAME_FORM = re.compile(r"([A-Za-z0-9_.\-]+)(?:(?:\[CALL_ID\]([A-Za-z0-9_\-]+))?\[ARGS\]"
                        r"|(?=[ \t\n\r]*\{))")
_NAME_CHARS = re.compile(r"[A-Za-z0-9_.\-\[\]]*")
_MAX_NAME = 512
_TEXT, _MODE, _NAME, _ITEM, _FIRST_ITEM, _NEXT, _CALL, _DROP = range(8)


class MistralParser(ParserBase):
    """Parse Mistral ``[TOOL_CALLS]`` tool calls (list form and ``name[ARGS]{...}`` form).

    Keywords: see :class:`~conveyor_integrations.parsing.base.ParserBase`.

    >>> p = MistralParser(id_prefix="d")
    >>> [type(e).__name__ for e in p.feed('[TOOL_CALLS]f[ARGS]{"a": [1]}') + p.close()]
    ['CallStarted', 'ItemDone', 'FieldDone', 'CallDone', 'StreamDone']
    """

    def __init__(self, **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self._state = _TEXT
        self._hold = ""
        self._in_list = False
        self._call: CallAssembler | None = None

    def _malformed(self, reason: str) -> None:
        index = self._next_index()
        self._emit(CallMalformed(index, self.new_id(index), None, reason))
        self._state = _DROP

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
                    self._state = _NEXT if self._in_list else _TEXT
            elif state == _TEXT:
                i = text.find(_TAG, pos)
                if i >= 0:
                    self._text(text[pos:i])
                    pos = i + len(_TAG)
                    self._state = _MODE
                    continue
                j = tag_prefix_at_end(text, pos, _TAG)
                if j >= 0:
                    self._hold = text[j:]
                    self._text(text[pos:j])
                else:
                    self._text(text[pos:] if pos else text)
                pos = n
            elif state == _NAME:
                m = _NAME_FORM.match(text, pos)
                if m is not None and m.end() - pos <= _MAX_NAME:
                    index = self._next_index()
                    self._call = CallAssembler(self, index, m.group(2) or self.new_id(index),
                                               name=m.group(1))
                    self._in_list = False
                    self._state = _CALL
                    pos = m.end()
                    continue
                k = _NAME_CHARS.match(text, pos).end()  # type: ignore[union-attr]
                if _WS.match(text, k).end() < n or n - pos > _MAX_NAME:  # type: ignore[union-attr]
                    self._malformed("expected name[ARGS]{...} after [TOOL_CALLS]")
                    continue
                self._hold = text[pos:]
                break
            elif state == _DROP:
                break
            else:
                pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
                if pos >= n:
                    break
                c = text[pos]
                if state == _MODE:
                    if c == "[":
                        self._state = _FIRST_ITEM
                        pos += 1
                    elif c == "{":              # one bare call object
                        index = self._next_index()
                        self._call = CallAssembler(self, index, self.new_id(index),
                                                   wrapper=True)
                        self._in_list = False
                        self._state = _CALL
                    else:
                        self._state = _NAME
                elif state == _NEXT:
                    if c == ",":
                        self._state = _ITEM
                        pos += 1
                    elif c == "]":
                        self._state = _TEXT
                        pos += 1
                    else:
                        self._state = _TEXT  # model text right after the calls
                elif c == "{":
                    index = self._next_index()
                    self._call = CallAssembler(self, index, self.new_id(index), wrapper=True)
                    self._in_list = True
                    self._state = _CALL
                elif c == "]" and state == _FIRST_ITEM:
                    self._state = _TEXT
                    pos += 1
                else:
                    self._malformed("expected a JSON object in the [TOOL_CALLS] list")
        if self._state == _DROP:
            self._hold = ""

    def _close(self) -> None:
        state = self._state
        if self._call is not None:
            self._call.fail("truncated call: JSON incomplete")
            self._call = None
        elif state in (_MODE, _NAME, _ITEM, _FIRST_ITEM):
            self._malformed("truncated [TOOL_CALLS]")
        elif state == _TEXT:
            self._text(self._hold)
        self._hold = ""
