"""DeepSeek V3 / R1 / V3.1 tool calls: special-token markers around JSON arguments.

The markers are written with FULLWIDTH VERTICAL LINE (U+FF5C) and LOWER ONE EIGHTH BLOCK
(U+2581). A message is text, then one calls section holding one or more calls::

    Let me look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>search
    ```json
    {"q": "x"}
    ```<｜tool▁call▁end｜>
    <｜tool▁call▁begin｜>function<｜tool▁sep｜>...<｜tool▁call▁end｜><｜tool▁calls▁end｜>

is the DeepSeek-V3 / R1 form (the type ``function``, the name, a fenced JSON block), and
``<｜tool▁call▁begin｜>search<｜tool▁sep｜>{"q": "x"}<｜tool▁call▁end｜>`` the DeepSeek-V3.1 /
V3.2-Exp form; both are accepted, in any mix. Whitespace between calls is markup. Text after
``<｜tool▁calls▁end｜>`` is model text; ``<｜end▁of▁sentence｜>`` (there when the server keeps
special tokens) is dropped outside calls and ends a calls section left open. Other text inside
a section is text. Only ``<｜tool▁calls▁begin｜>`` opens a section: a lone
``<｜tool▁call▁begin｜>`` in prose is text.

Hand-written: no library parses this format incrementally, field by field. The arguments go
through the shared :class:`~.assembler.CallAssembler` (each field final as soon as the JSON
says so), the markers arrive split anywhere between deltas, and only what may still become a
marker (or a tool name, at most a few hundred characters) waits for the next delta, so the
work stays linear. Example::

    >>> p = DeepSeekV3Parser(id_prefix="d")
    >>> evs = p.feed("Ok.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\\"a\\": 1")
    >>> [type(e).__name__ for e in evs]
    ['Text', 'CallStarted']
    >>> evs = p.feed("}<｜tool▁call▁end｜><｜tool▁calls▁end｜>") + p.close()
    >>> [type(e).__name__ for e in evs], evs[1].args
    (['FieldDone', 'CallDone', 'StreamDone'], {'a': 1})
"""

from __future__ import annotations

import re
from typing import Unpack

from ..events import CallMalformed
from .assembler import CallAssembler
from .base import ParserBase, ParserOptions

__all__ = ["DeepSeekV3Parser"]

CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
EOS = "<｜end▁of▁sentence｜>"
_FENCE_OPEN, _FENCE_CLOSE = "```json", "```"
_MAX_NAME = 256
_LONGEST = max(len(m) for m in (CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP, EOS))
_WS = re.compile(r"[ \t\n\r]*")
_NAME = re.compile(r"[^\s<>{}\[\]`\"'｜]{0,%d}" % (_MAX_NAME + 1))  # noqa: UP031 - regex braces
_SECTION_MARKERS = (CALL_BEGIN, CALLS_END, EOS)
_ENDS = (CALL_END, CALL_BEGIN, CALLS_END)     # what may follow a call's arguments
(_TEXT, _SECTION, _STRAY, _HEAD, _FORM, _NAME_V3, _FENCE, _ARGS, _AFTER, _SKIPJSON,
 _SKIP) = range(11)
_SCAN = {state: (re.compile("|".join(markers)), markers) for state, markers in (
    (_TEXT, (CALLS_BEGIN, EOS)), (_STRAY, _SECTION_MARKERS),
    (_SKIP, (CALL_BEGIN, CALL_END, CALLS_END, EOS)))}
"""The text-like states: the markers each looks for (everything else is text, or dropped)."""
_IN_CALL = frozenset({_HEAD, _FORM, _NAME_V3, _FENCE, _ARGS, _AFTER})
_TRUNCATED = {_HEAD: "no <｜tool▁sep｜> after the tool name", _FORM: "no arguments",
              _NAME_V3: "the tool name is not complete", _FENCE: "no ```json block",
              _ARGS: "arguments JSON incomplete", _AFTER: "no <｜tool▁call▁end｜>"}


def _held(text: str, pos: int, markers: tuple[str, ...]) -> int:
    """Where a proper prefix of one of the ``markers`` ends ``text`` (from ``pos``), else -1.

    All markers start with their only ``<``, so only the last ``<`` can start one.

    >>> _held("a <｜tool▁ca", 0, _SECTION_MARKERS), _held("a <b", 0, _SECTION_MARKERS)
    (2, -1)
    """
    j = text.rfind("<", max(pos, len(text) - _LONGEST + 1))
    if j >= 0 and any(m.startswith(text[j:]) for m in markers):
        return j
    return -1


class DeepSeekV3Parser(ParserBase):
    """Parse DeepSeek-V3 / R1 (fenced JSON) and V3.1 (bare JSON) tool calls.

    A call is malformed when its arguments are bad or truncated JSON, too deep, too long,
    hold a repeated key or are not an object, its tool is unknown (``tools``), its name is
    missing or not a name, the V3 form lacks its ```` ```json ```` fence or the fence's
    close, or ``<｜tool▁call▁end｜>`` is missing; the parser goes on at the next call. No
    JSON at all in the V3.1 form (``name<｜tool▁sep｜><｜tool▁call▁end｜>``) is ``{}``.
    Keywords: see :class:`~conveyor_integrations.parsing.base.ParserBase`.

    >>> p = DeepSeekV3Parser(id_prefix="d", tools=["f"])
    >>> evs = p.feed("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>rm<｜tool▁sep｜>{}")
    >>> [e.reason for e in evs]
    ["unknown tool 'rm'"]
    """

    def __init__(self, **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self._state = _TEXT
        self._hold = ""
        self._head = ""
        self._index = -1
        self._v3 = False                      # the fenced V3 form: the fence's close is due
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
            elif state == _SKIPJSON:
                call = self._call
                assert call is not None
                pos += call.feed(text[pos:] if pos else text)
                if call.scanner.ended:
                    self._call = None
                    self._state = _SKIP
            elif state in (_TEXT, _STRAY, _SKIP):
                pattern, markers = _SCAN[state]
                m = pattern.search(text, pos)
                end = m.start() if m is not None else n
                if m is None and (j := _held(text, pos, markers)) >= 0:
                    end = j
                    self._hold = text[j:]
                if state != _SKIP:
                    self._text(text[pos:end] if pos or end < n else text)
                if m is None:
                    return
                pos = self._marker(m.group(), m.end())
            elif state == _SECTION:
                pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
                if pos < n:
                    pos = self._expect(text, pos, _SECTION_MARKERS, _STRAY)
            elif state == _HEAD or state == _NAME_V3:
                pos = self._name(text, pos)
            elif state == _FORM:              # after "function<｜tool▁sep｜>": which form?
                if text[pos] in "{<[ \t\r\n":
                    self._start(self._head, _ARGS)
                else:
                    self._state = _NAME_V3
            elif state == _FENCE:
                pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
                if pos < n:
                    pos = self._expect(text, pos, (_FENCE_OPEN,), -1,
                                       "expected ```json after the tool name")
            else:  # _AFTER: the arguments' JSON is done
                pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
                if pos < n:
                    pos = self._expect(text, pos, (_FENCE_CLOSE, *_ENDS) if self._v3 else _ENDS,
                                       -1, "unexpected text after the arguments JSON (expected "
                                       + ("```" if self._v3 else CALL_END) + ")")

    def _expect(self, text: str, pos: int, options: tuple[str, ...], otherwise: int,
                reason: str = "") -> int:
        """Take one of the ``options`` at ``pos``; hold a prefix of one; else go to state
        ``otherwise`` (-1: the call is malformed for ``reason``)."""
        rest = text[pos:pos + _LONGEST]
        for option in options:
            if rest.startswith(option):
                return self._marker(option, pos + len(option))
        if len(rest) < _LONGEST and any(o.startswith(rest) for o in options):
            self._hold = text[pos:]
            return len(text)
        if otherwise >= 0:
            self._state = otherwise
        else:
            self._fail(reason)
        return pos

    def _marker(self, marker: str, pos: int) -> int:
        """React to ``marker``, which ended just before ``pos``; return ``pos``."""
        state = self._state
        if marker == _FENCE_OPEN:
            self._state = _ARGS
        elif marker == _FENCE_CLOSE:
            self._v3 = False
        elif state in _IN_CALL:
            call = self._call
            if self._v3 and state == _AFTER:
                self._fail("missing closing ``` after the arguments JSON")
                return self._marker(marker, pos)
            if marker == CALL_END and call is not None and state in (_ARGS, _AFTER):
                call.finish(empty_is_ok=not self._v3)
                self._call = None
                self._state = _SECTION
                return pos
            self._fail(f"missing {CALL_END}")
            return self._marker(marker, pos)
        elif marker == CALLS_BEGIN:
            self._state = _SECTION
        elif marker == CALL_BEGIN:
            self._index = self._next_index()
            self._state = _HEAD
        elif marker == CALL_END:
            self._state = _SECTION
        else:                                  # CALLS_END or EOS: the section is over
            self._state = _TEXT
        return pos

    def _name(self, text: str, pos: int) -> int:
        """The V3.1 name (or V3 type) before ``<｜tool▁sep｜>``, or the V3 name before a
        newline."""
        n = len(text)
        end = _NAME.match(text, pos).end()  # type: ignore[union-attr]
        name = text[pos:end]
        if len(name) > _MAX_NAME:
            self._fail("tool name too long")
            return pos
        head = self._state == _HEAD
        stop = SEP if head else "\n"
        rest = text[end:end + len(stop)]
        if rest == stop:
            if not name:
                self._fail("empty tool name")
            elif not head:
                self._start(name, _FENCE)
            elif name == "function":          # the V3 form's type, or a V3.1 tool's name
                self._head = name
                self._state = _FORM
            else:
                self._start(name, _ARGS)
            return end + len(stop)
        if end + len(rest) == n and stop.startswith(rest):
            self._hold = text[pos:]
            return n
        self._fail(f"expected {'<｜tool▁sep｜> after' if head else 'a newline after'} the "
                   f"tool name, got {text[end]!r}")
        return pos

    def _start(self, name: str, state: int) -> None:
        self._v3 = state == _FENCE
        self._call = CallAssembler(self, self._index, self.new_id(self._index), name=name)
        self._state = state

    def _args(self, text: str, pos: int) -> int:
        call = self._call
        assert call is not None
        if call.scanner.untouched:            # V3.1 writes no JSON for no arguments
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if pos >= len(text):
                return pos
            if text[pos] == "<":
                return self._expect(text, pos, _ENDS, -1,
                                    "expected the arguments JSON object")
        pos += call.feed(text[pos:] if pos else text)
        if call.finished:
            if call.scanner.error is None and not call.scanner.ended:
                call.skip()                   # refused but well formed: skip it by brackets
                self._state = _SKIPJSON
            else:
                self._call = None
                self._state = _SKIP
        elif call.scanner.done:
            self._state = _AFTER
        return pos

    def _fail(self, reason: str) -> None:
        call = self._call
        if call is not None:
            call.fail(reason)
        else:
            self._emit(CallMalformed(self._index, self.new_id(self._index), None, reason))
        self._call = None
        self._state = _SKIP
        self._v3 = False

    def _abort(self, reason: str) -> None:
        if self._state in _IN_CALL:
            self._fail(reason)

    def _close(self) -> None:
        hold, self._hold = self._hold, ""
        state = self._state
        if state in _IN_CALL:
            what = _TRUNCATED[state]
            if state == _AFTER and self._v3:
                what = "no closing ``` after the arguments JSON"
            self._fail(f"truncated call: {what}")
        elif state in (_TEXT, _SECTION, _STRAY):
            self._text(hold)
