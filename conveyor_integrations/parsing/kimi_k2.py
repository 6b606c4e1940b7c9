"""Kimi K2 tool calls: a section of ``functions.NAME:IDX`` headers with JSON arguments.

Kimi-K2-Instruct's chat template writes an assistant message's calls after its text, with
no whitespace between the markers (each one special token; broken over lines here only)::

    Let me look.<|tool_calls_section_begin|>
    <|tool_call_begin|>functions.search:0<|tool_call_argument_begin|>{"q": "x"}<|tool_call_end|>
    <|tool_call_begin|>functions.python:1<|tool_call_argument_begin|>{"code": "1"}<|tool_call_end|>
    <|tool_calls_section_end|>

The header before ``<|tool_call_argument_begin|>`` is the call's id, the one later messages
and tool results refer to (``## Return of functions.search:0``), so it is the id of the
events; the tool's name is the part between ``functions.`` and the last ``:``. As in vLLM's
``kimi_k2`` parser, a header without the ``functions.`` prefix (``search:0``), whitespace
around the header and between calls, and empty arguments (taken as ``{}``) are accepted, and
so are the singular ``<|tool_call_section_begin|>`` / ``<|tool_call_section_end|>`` markers
(vLLM's parser took them before its parser-engine rewrite). Text before the section, between
calls and after the section is model text (``Text``).

The markers are special tokens, so they are boundaries wherever they appear, also inside an
unterminated JSON string: ``<|tool_call_end|>`` there ends the call (as truncated JSON), and
the parser recovers at the next ``<|tool_call_begin|>``. Look-alikes (``<|tool_call_end|``,
``<|tool_callx|>``) are text, or string content inside the arguments.

Hand-written: no library parses this format incrementally, field by field. The JSON goes
through the shared :class:`~.assembler.CallAssembler` (each top-level argument final the
moment its text is), and only a possible marker's start waits for the next delta, so the
work stays linear in the message's length. Example::

    >>> p = KimiK2Parser(id_prefix="d")
    >>> evs = p.feed('Sure.<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0'
    ...              '<|tool_call_argument_begin|>{"a": "x", "b": 1')
    >>> [(type(e).__name__, getattr(e, "id", "")) for e in evs]
    [('Text', ''), ('CallStarted', 'functions.f:0'), ('FieldDone', '')]
    >>> evs = p.feed("}<|tool_call_end|><|tool_calls_section_end|> Done.") + p.close()
    >>> [type(e).__name__ for e in evs], evs[1].args
    (['FieldDone', 'CallDone', 'Text', 'StreamDone'], {'a': 'x', 'b': 1})
"""

from __future__ import annotations

import re
from typing import Unpack

from ..events import CallMalformed
from .assembler import CallAssembler
from .base import ParserBase, ParserOptions, tag_prefix_at_end

__all__ = ["KimiK2Parser"]

_STEM = "<|tool_call"                       # every marker starts with it
_SECTIONS = ("<|tool_calls_section_begin|>", "<|tool_call_section_begin|>")
_SECTION_ENDS = ("<|tool_calls_section_end|>", "<|tool_call_section_end|>")
_CALL, _ARG, _CALL_END = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"
_ALL = (*_SECTIONS, *_SECTION_ENDS, _CALL, _ARG, _CALL_END)
_IN_SECTION = (_CALL, *_SECTION_ENDS, *_SECTIONS)
_LONGEST = max(map(len, _ALL))
_HEADER_RE = re.compile(r"(?:functions\.)?([^\s]+):[0-9]+")
_WS = re.compile(r"[ \t\n\r]*")
_JSON_WS = " \t\n\r"
_MAX_HEADER = 512
_TEXT, _SECTION, _STRAY, _HEADER, _ARGS, _SKIP = range(6)


def _find(text: str, pos: int, tags: tuple[str, ...]) -> tuple[int, str]:
    """The first of ``tags`` in ``text[pos:]``: ``(start, tag)``; ``(start, "")`` for a tail
    that may still become one of them; ``(len(text), "")`` when neither.

    >>> _find("ab<|tool_call_end|>", 0, _ALL), _find("a<|tool_c", 0, _ALL)
    ((2, '<|tool_call_end|>'), (1, ''))
    """
    n = len(text)
    i = text.find(_STEM, pos)
    while i >= 0:
        for tag in tags:
            if text.startswith(tag, i):
                return i, tag
        if n - i < _LONGEST and any(tag.startswith(text[i:]) for tag in tags):
            return i, ""
        i = text.find(_STEM, i + 1)
    j = tag_prefix_at_end(text, pos, _STEM)
    return (j, "") if j >= 0 else (n, "")


class KimiK2Parser(ParserBase):
    """Parse Kimi K2's ``<|tool_calls_section_begin|>`` tool-call sections.

    Call ids are the model's own headers (``functions.NAME:IDX``); a header that is not
    ``[functions.]NAME:IDX``, bad or truncated JSON, text after the JSON, or a call that
    lacks ``<|tool_call_end|>`` is ``CallMalformed``. Keywords: see :class:`ParserBase`.

    >>> p = KimiK2Parser(tools=["f"])
    >>> [e.reason for e in p.feed("<|tool_calls_section_begin|><|tool_call_begin|>"
    ...                           "functions.rm:0<|tool_call_argument_begin|>{}")]
    ["unknown tool 'rm'"]
    """

    def __init__(self, **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self._state = _TEXT
        self._hold = ""
        self._header = ""
        self._index = -1
        self._call: CallAssembler | None = None

    def _feed_text(self, text: str) -> None:
        if self._hold:
            text = self._hold + text
            self._hold = ""
        pos, n = 0, len(text)
        while pos < n:
            state = self._state
            if state == _ARGS:
                pos = self._args(text, pos)
            elif state == _HEADER:
                pos = self._read_header(text, pos)
            elif state == _SECTION:     # between calls: whitespace is the template's
                pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
                if pos < n:
                    self._state = _STRAY
            elif state == _SKIP:        # a malformed call: drop text up to its end
                i, tag = _find(text, pos, _ALL)
                if not tag:
                    self._hold = text[i:]
                    return
                pos = i if tag == _CALL else i + len(tag)
                self._state = _SECTION if tag in (_CALL, _CALL_END) else \
                    _TEXT if tag in _SECTION_ENDS else _SKIP
            else:                       # _TEXT, or model text inside the section
                pos = self._markup(text, pos)

    def _markup(self, text: str, pos: int) -> int:
        """Outside a call (``_TEXT`` or ``_STRAY``): text up to the next marker that counts."""
        i, tag = _find(text, pos, _SECTIONS if self._state == _TEXT else _IN_SECTION)
        self._text(text[pos:i] if pos or i < len(text) else text)
        if not tag:
            self._hold = text[i:]
            return len(text)
        if tag == _CALL:
            self._index = self._next_index()
            self._header = ""
            self._state = _HEADER
        else:
            self._state = _TEXT if tag in _SECTION_ENDS else _SECTION
        return i + len(tag)

    def _read_header(self, text: str, pos: int) -> int:
        i, tag = _find(text, pos, _ALL)
        self._header += text[pos:min(i, pos + _MAX_HEADER + 1)]
        if len(self._header) > _MAX_HEADER:
            return self._bad(f"call id longer than {_MAX_HEADER} characters", i)
        if not tag:
            self._hold = text[i:]
            return len(text)
        if tag != _ARG:
            return self._bad(f"expected {_ARG} after the call id, got {tag}", i)
        header = self._header.strip(_JSON_WS)
        m = _HEADER_RE.fullmatch(header)
        if m is None:
            return self._bad(f"malformed call id {header[:60]!r} (expected functions.NAME:IDX)",
                             i + len(tag))
        self._call = CallAssembler(self, self._index, header, name=m.group(1))
        self._state = _SKIP if self._call.finished else _ARGS    # finished: unknown tool
        return i + len(tag)

    def _bad(self, reason: str, pos: int) -> int:
        self._emit(CallMalformed(self._index, None, None, reason))
        self._state = _SKIP
        return pos

    def _args(self, text: str, pos: int) -> int:
        call = self._call
        assert call is not None
        i, tag = _find(text, pos, _ALL)
        used = call.feed(text[pos:i])
        if call.finished:                           # bad JSON, or too long
            self._state = _SKIP
            return i
        done = call.scanner.done
        if done and text[pos + used:i].strip(_JSON_WS):
            call.fail(f"unexpected text after the arguments JSON (expected {_CALL_END})")
            self._state = _SKIP
            return i
        if not tag:
            self._hold = text[i:]
            return len(text)
        if tag == _CALL_END:
            if done or call.scanner.untouched:
                call.finish(empty_is_ok=True)
            else:
                call.fail(f"truncated arguments JSON before {_CALL_END}")
            self._state = _SECTION
            return i + len(tag)
        call.fail(f"{'missing ' + _CALL_END if done else 'truncated arguments JSON'} before "
                  f"{tag}" if tag in (_CALL, *_SECTION_ENDS) else f"unexpected {tag} in a call")
        self._state = _SKIP
        return i

    def _abort(self, reason: str) -> None:
        if self._state == _HEADER:
            self._bad(reason, 0)
        else:
            super()._abort(reason)

    def _close(self) -> None:
        hold, self._hold = self._hold, ""
        state = self._state
        if state == _HEADER:
            self._bad(f"truncated call: no {_ARG}", 0)
        elif state == _ARGS and self._call is not None:
            self._call.fail(f"truncated call: no {_CALL_END}" if self._call.scanner.done
                            else "truncated call: arguments JSON incomplete")
        elif state != _SKIP:
            self._text(hold)
