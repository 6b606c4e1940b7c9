"""Pythonic tool calls (Llama 3.2, Llama 4): a Python list of keyword-argument calls.

The message is ``[get_weather(city="Paris", days=3), search(q='x', tags=("a", "b"))]``,
possibly wrapped in ``<|python_start|>`` ... ``<|python_end|>`` (Llama 4): what vLLM's
``pythonic`` and ``llama4_pythonic`` parsers read. As there, the message holds calls only if
it starts with ``[name(`` (after whitespace, or the tag); otherwise all of it is model text
(``[1, 2]`` too, which vLLM's streaming path would drop). What follows the list's ``]`` (less
whitespace) and ``<|python_end|>`` is model text too (vLLM gives it all as text then, or
streamed, drops it). Arguments are keywords; values are literals as vLLM takes them:
strings (``'``/``"``, triple quotes, escapes, ``r``/``u``, ``f`` without placeholders), ints
and floats (signs, ``0x``, ``1_000``), ``True``/``False``/``None`` and ``true``/``false``/
``null``, lists, dicts with string keys, and tuples and sets (given as lists). Anything else
makes the call ``CallMalformed``; as vLLM reads the list as one block, the rest of the list is
then skipped (calls done before it stay done). A call of an unknown tool is skipped alone.
Unlike vLLM (whose ``ast`` reading would accept them) implicit string concatenation, a sign before parentheses, backslash continuations,
non-string dict keys, repeated dict keys, infinite floats and NUL characters are malformed;
comments and newlines inside the list are fine.

It is hand-written because ``ast`` only parses a complete text: re-parsing the growing prefix
on every delta (as vLLM does) is quadratic and says nothing about which values are final.
Here every character is looked at once (the arguments by :mod:`.py_args`) and each value is
reported the moment it is final: a string at its closing quote, a number at its delimiter,
``True`` at its last character, a container at its closing bracket (``''`` once the next
character shows it opens no triple quote). Example::

    >>> p = PythonicParser(id_prefix="d")
    >>> evs = p.feed('[get_weather(city="Paris", days=3')
    >>> [(type(e).__name__, getattr(e, "path", None)) for e in evs]
    [('CallStarted', None), ('FieldDone', ('city',))]
    >>> [type(e).__name__ for e in p.feed("), f()] Done.") + p.close()]
    ['FieldDone', 'CallDone', 'CallStarted', 'CallDone', 'Text', 'StreamDone']
"""

from __future__ import annotations

import keyword
import re
from typing import Unpack

from ..events import CallDone, CallMalformed, CallStarted
from .base import ParserBase, ParserOptions
from .py_args import MAX_NAME, ArgsScanner

__all__ = ["PythonicParser"]

_TAG_START, _TAG_END = "<|python_start|>", "<|python_end|>"
_MAX_HEAD = 256
_SPACE = re.compile(r"[ \t\n\r\f]*")
_WS = re.compile(r"(?:[ \t\n\r\f]+|#[^\n]*\n)*")      # inside the list: comments too
_NAME_RUN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_SKIP_TOKEN = re.compile(r"""[][(){}'"#]""")
_SKIP_IN = {q: re.compile(r"\\|\n|" + q if len(q) == 1 else r"\\|" + q)
            for q in ("'", '"', "'''", '"""')}
_BEGIN, _TEXT, _LIST, _LPAREN, _CALL, _AFTER_CALL, _TAIL, _SKIP = range(8)


def _head(h: str) -> int:
    """Where the list's content starts (> 0), 0 while undecided, -1: the message is text."""
    i = _SPACE.match(h).end()  # type: ignore[union-attr]
    if h.startswith(_TAG_START, i):
        i = _SPACE.match(h, i + len(_TAG_START)).end()  # type: ignore[union-attr]
    elif _TAG_START.startswith(h[i:]):
        return 0
    if i == len(h):
        return 0
    if h[i] != "[":
        return -1
    j = _SPACE.match(h, i + 1).end()  # type: ignore[union-attr]
    m = _NAME_RUN.match(h, j)
    if j == len(h) or (m is not None and m.end() == len(h)):
        return 0
    if m is None:
        return -1
    k = _SPACE.match(h, m.end()).end()  # type: ignore[union-attr]
    return 0 if k == len(h) else i + 1 if h[k] == "(" else -1


class PythonicParser(ParserBase):
    """Parse a Python list of tool calls (vLLM's ``pythonic`` / ``llama4_pythonic`` formats).

    Keywords: see :class:`~conveyor_integrations.parsing.base.ParserBase`; ``max_arg_chars``
    counts the characters between a call's parentheses.

    >>> p = PythonicParser(id_prefix="d")
    >>> [e.reason for e in p.feed("[f(x=a + b)]") if type(e).__name__ == "CallMalformed"]
    ["not a literal: 'a'"]
    """

    def __init__(self, **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self._state = _BEGIN
        self._carry = ""
        self._wait = self._comment = False
        self._args: ArgsScanner | None = None
        self._index, self._id, self._name, self._room = 0, "", "", 0
        self._depth, self._target, self._sq, self._after_skip = 0, 0, "", _TAIL

    def _feed_text(self, text: str) -> None:
        s = self._carry + text if self._carry else text
        self._carry = ""
        n, pos = len(s), 0
        while pos < n:
            st = self._state
            if st == _CALL:
                args = self._args
                assert args is not None
                end = n if n - pos <= self._room else pos + self._room
                p = args.feed(s, pos, end)
                self._room -= p - pos
                if args.error is not None:
                    self._fail(args.error)
                elif args.done:
                    self._emit(CallDone(self._index, self._id, self._name, args.args))
                    self._args, self._state = None, _AFTER_CALL
                elif end < n:
                    self._fail(f"arguments exceed {self.max_arg_chars} characters")
                elif args.wait:
                    self._carry = s[p:]
                    return
                pos = p
            elif st == _SKIP:
                pos = self._skip(s, pos, n)
                if self._wait:
                    self._wait = False
                    self._carry = s[pos:]
                    return
            elif st == _TEXT:
                self._text(s[pos:] if pos else s)
                return
            elif st == _BEGIN:
                r = _head(s[:_MAX_HEAD])
                if r == 0 and n < _MAX_HEAD:
                    self._carry = s
                    return
                self._state, pos = (_LIST, r) if r > 0 else (_TEXT, 0)
            elif st == _TAIL:
                pos = _SPACE.match(s, pos).end()  # type: ignore[union-attr]
                if s.startswith(_TAG_END, pos):
                    pos += len(_TAG_END)
                elif n - pos < len(_TAG_END) and _TAG_END.startswith(s[pos:]):
                    self._carry = s[pos:]
                    return
                self._state = _TEXT
            else:
                pos = self._ws(s, pos, n)
                if pos >= n:
                    return
                pos = self._list_token(s, pos, n)
                if self._wait:
                    self._wait = False
                    self._carry = s[pos:]
                    return

    def _list_token(self, s: str, pos: int, n: int) -> int:
        """One token between the calls: a call's name, its ``(``, a ``,`` or the ``]``."""
        ch, st = s[pos], self._state
        if st == _LPAREN:
            if ch != "(":
                self._junk("expected '(' after the tool name", self._name)
                return pos
            self._start_call()
            return pos + 1
        if st == _AFTER_CALL or ch == "]":
            if ch not in ",]":
                self._junk("expected ',' or ']' after a call")
                return pos
            self._state = _LIST if ch == "," else _TAIL
            return pos + 1
        m = _NAME_RUN.match(s, pos)                  # _LIST: a call's name
        e = m.end() if m is not None else pos
        if m is not None and e == n and e - pos <= MAX_NAME:
            self._wait = True
            return pos
        name = s[pos:e]
        if e - pos > MAX_NAME or not _DOTTED.fullmatch(name) or any(
                keyword.iskeyword(part) for part in name.split(".")):
            self._junk("expected a tool call, name(keyword=value, ...)")
            return pos
        self._name, self._state = name, _LPAREN
        return e

    def _ws(self, s: str, pos: int, end: int) -> int:
        if self._comment:
            nl = s.find("\n", pos, end)
            if nl < 0:
                return end
            self._comment, pos = False, nl + 1
        pos = _WS.match(s, pos, end).end()  # type: ignore[union-attr]
        if pos < end and s[pos] == "#":
            self._comment, pos = True, end
        return pos

    def _close(self) -> None:
        if self._state == _CALL:
            self._fail("truncated call: the message ended inside it")
        elif self._state in (_BEGIN, _TAIL):
            self._text(self._carry)
        self._carry = ""

    def _abort(self, reason: str) -> None:
        if self._state == _CALL:
            self._fail(reason)

    def _start_call(self) -> None:
        index = self._index = self._next_index()
        self._id = self.new_id(index)
        if self.tools is not None and self._name not in self.tools:
            self._emit(CallMalformed(index, self._id, self._name, f"unknown tool {self._name!r}"))
            self._start_skip(2, "", False, 1, _AFTER_CALL)    # skip this call alone
            return
        self._emit(CallStarted(index, self._id, self._name))
        self._args = ArgsScanner(self._events, index, self.streams.get(self._name, {}),
                                 self.max_depth)
        self._room = self.max_arg_chars
        self._state = _CALL

    def _fail(self, reason: str) -> None:
        """The open call is malformed: so is the rest of the list (skipped, as one block)."""
        self._emit(CallMalformed(self._index, self._id, self._name, reason))
        args = self._args
        if args is None:
            self._start_skip(1, "", False, 0, _TAIL)
        else:
            self._start_skip(args.depth + 1, args.quote, args.comment, 0, _TAIL)
        self._args = None

    def _junk(self, reason: str, name: str | None = None) -> None:
        """The list holds something other than calls: the rest of it is malformed."""
        self._emit(CallMalformed(self._next_index(), None, name, reason))
        self._start_skip(1, "", False, 0, _TAIL)

    def _start_skip(self, depth: int, quote: str, comment: bool, target: int,
                    after: int) -> None:
        self._depth, self._sq, self._comment = depth, quote, comment
        self._target, self._after_skip, self._state = target, after, _SKIP

    def _skip(self, s: str, pos: int, end: int) -> int:
        """Find where the open brackets close, through strings and comments; keep nothing."""
        depth, q = self._depth, self._sq
        while pos < end:
            if q:
                m = _SKIP_IN[q].search(s, pos, end)
                if m is None:
                    k = end
                    while len(q) == 3 and k > pos and end - k < 2 and s[k - 1] == q[0]:
                        k -= 1
                    self._wait, pos = k < end, k
                    break
                i = m.start()
                if s[i] == "\\":
                    if i + 1 >= end:
                        self._wait, pos = True, i
                        break
                    pos = i + 2
                else:
                    q, pos = "", m.end()
            elif self._comment:
                nl = s.find("\n", pos, end)
                self._comment, pos = nl < 0, end if nl < 0 else nl + 1
            else:
                m = _SKIP_TOKEN.search(s, pos, end)
                if m is None:
                    pos = end
                    break
                i = m.start()
                c = s[i]
                if c in "'\"":
                    if end - i < 3 and s[i:end] == c * (end - i):
                        self._wait, pos = True, i
                        break
                    q = c * 3 if s.startswith(c * 3, i) else c
                    pos = i + len(q)
                elif c == "#":
                    self._comment, pos = True, i + 1
                else:
                    depth += 1 if c in "([{" else -1
                    pos = i + 1
                    if depth <= self._target:
                        self._state = self._after_skip
                        break
        self._depth, self._sq = depth, q
        return pos
