"""An incremental scanner of one Python call's keyword arguments whose values are literals.

The pythonic format's counterpart of :mod:`.json_scanner`: fed the text after a call's ``(``
in chunks of any size, it looks at every character once and emits ``FieldDone`` /
``ItemDone`` / ``TextChunk`` the moment a value is final (a string at its closing quote, a
number at its delimiter, ``True`` at its last character, a container at its closing
bracket; ``(x)`` and a set's or tuple's first element once the next token says which it is),
up to the call's ``)``. String bodies are taken by one compiled regex per chunk and
decoded by the ``unicode_escape`` codec (C), as Python decodes its string literals. Values are
what vLLM's pythonic reader takes: str, int, float, bool, None (also ``true``/``false``/
``null``), lists, dicts with string keys, tuples and sets (as lists). Example::

    >>> out: list = []
    >>> sc = ArgsScanner(out, 0, {}, 8)
    >>> sc.feed('a=[1, (2)], b=0x1f', 0, 18), sc.wait, out[-1]
    (14, True, FieldDone(index=0, path=('a',), value=[1, 2]))
    >>> sc.feed('0x1f) tail', 0, 10), sc.done, sc.args  # again from where it waited
    (5, True, {'a': [1, 2], 'b': 31})
"""

from __future__ import annotations

import keyword
import re
import warnings
from collections.abc import Mapping
from typing import Any

from ..events import CallEvent, Event, FieldDone, ItemDone, JSONPath, TextChunk
from .assembler import value_events
from .statements import LineSplitter, StatementSplitter, split_text

__all__ = ["MAX_NAME", "ArgsScanner"]

MAX_NAME, _MAX_NUMBER = 256, 4400
_WS = re.compile(r"(?:[ \t\n\r\f]+|#[^\n]*\n)*")      # inside brackets: comments too
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LITERAL = re.compile(r"True|False|None|true|false|null")
_LITERALS = {"True": True, "true": True, "False": False, "false": False}
_NUM_RUN = re.compile(r"(?:[0-9A-Za-z_.]|(?<=[eE])[+-])*")
_D = r"[0-9](?:_?[0-9])*"
_INT = re.compile(r"0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+|0(?:_?0)*"
                  r"|[1-9](?:_?[0-9])*")
_FLOAT = re.compile(rf"(?:(?:{_D})?\.{_D}|{_D}\.)(?:[eE][+-]?{_D})?|{_D}[eE][+-]?{_D}")
_PREFIXES = frozenset({"r", "u", "f", "rf", "fr", "b", "br", "rb"})
_ESC = (r"\\(?:[0-7]{3}|[0-7]{1,2}(?=[^0-7])|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}"
        r"|N\{[A-Za-z0-9 \-]{1,100}\}|\r\n|\r(?=[^\n])|[^0-7xuUN\r\u0100-\U0010ffff])")
_RAW_ESC = r"\\(?:\r\n|\r(?=[^\n])|[^\r])"
_ESC_PREFIX = {False: re.compile(r"\\(?:[0-7]{1,2}|x[0-9a-fA-F]?|u[0-9a-fA-F]{0,3}"
                                 r"|U[0-9a-fA-F]{0,7}|N(?:\{[A-Za-z0-9 \-]{0,100})?|\r)?"),
               True: re.compile(r"\\\r?")}
# one string's body: runs of plain characters and complete escapes, per (quote, raw)
_BODY = {(q, raw): re.compile("(?:" + "|".join(
    ([f"[^\\\\{q[0]}\\n\\r]+"] if len(q) == 1 else
     [f"[^\\\\{q[0]}\\r]+", r"\r\n", r"\r(?=[^\n])", f"{q[0]}(?=[^{q[0]}])",
      f"{q[0]}{q[0]}(?=[^{q[0]}])"]) + [_RAW_ESC if raw else _ESC]) + ")*")
    for q in ("'", '"', "'''", '"""') for raw in (False, True)}
_CLOSER = ")]))}}}"           # by frame kind
_KW, _EQ, _VALUE, _AFTER, _COLON, _STRING, _DONE, _ERROR = range(8)
# frame kinds: the call, list, "(" and "{" while undecided, tuple, dict, set
_CALLF, _LISTF, _PAREN, _TUPLE, _BRACE, _DICT, _SET = range(7)


class _Bad(Exception):
    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = pos


class _Frame:
    __slots__ = ("cont", "emits", "key", "kind", "path")

    def __init__(self, kind: int, cont: Any, path: JSONPath, emits: bool) -> None:
        self.kind = kind
        self.cont = cont
        self.path = path
        self.emits = emits        # are its members' events emitted (not inside an undecided one)
        self.key: str | None = None


def _number(tok: str, pos: int) -> int | float:
    try:
        if _INT.fullmatch(tok):
            return int(tok, 0)
        if _FLOAT.fullmatch(tok):
            value = float(tok)
            if value not in (float("inf"), float("-inf")):
                return value
            raise _Bad("number out of range", pos)
    except ValueError:
        raise _Bad("number too large", pos) from None
    raise _Bad(f"invalid number {tok[:20]!r}", pos)


def _decode(seg: str, raw: bool, pos: int) -> str:
    if "\r" in seg:                                   # as Python reads source lines
        seg = seg.replace("\r\n", "\n").replace("\r", "\n")
    if raw or "\\" not in seg:
        return seg
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")           # "\d" stays "\d", as in Python
            return seg.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        raise _Bad("invalid escape in string", pos) from None


class ArgsScanner:
    """Scan ``name=literal, ...)`` fed in chunks; emit the events of call ``index`` to ``out``.

    :meth:`feed` takes ``s[pos:end]`` and returns where it stopped: at ``end``; after the
    call's ``)`` (:attr:`done`); at a token that needs more text (:attr:`wait`: feed again
    from there with more); or at the offending character (:attr:`error` is set). ``units``:
    top-level string arguments streamed as ``TextChunk`` pieces ("line", "statement", "raw").
    :attr:`depth`, :attr:`quote` and :attr:`comment` tell a skipper where the text stands.
    """

    def __init__(self, out: list[Event], index: int, units: Mapping[str, str],
                 max_depth: int) -> None:
        self.args: dict[str, Any] = {}
        self.error: str | None = None
        self.wait = self.comment = False
        self._out, self._index, self._units, self._max_depth = out, index, units, max_depth
        self._emit = out.append
        self._state = _KW
        self._stack = [_Frame(_CALLF, self.args, (), True)]
        self._need = self._signed = self._neg = False
        self._q, self._raw, self._fstr, self._parts = "", False, False, [""]
        self._streaming = False
        self._split: LineSplitter | StatementSplitter | None = None

    @property
    def done(self) -> bool:
        """The call's ``)`` was read and its arguments are well formed."""
        return self._state == _DONE

    @property
    def depth(self) -> int:
        """Brackets open, the call's ``(`` included."""
        return len(self._stack)

    @property
    def quote(self) -> str:
        """The quote of the string being read, else ""."""
        return self._q if self._state == _STRING else ""

    def feed(self, s: str, pos: int, end: int) -> int:
        """Scan ``s[pos:end]``; return where scanning stopped (see the class docstring)."""
        self.wait = False
        while pos < end and self._state < _DONE and not self.wait:
            st = self._state
            try:
                if st == _STRING:
                    pos = self._string(s, pos, end)
                elif self.comment or s[pos] in " \t\n\r\f#":
                    pos = self._ws(s, pos, end)
                elif st == _VALUE:
                    pos = self._value(s, pos, end)
                elif st == _AFTER:
                    pos = self._after(s, pos)
                elif st == _KW:
                    pos = self._keyword(s, pos, end)
                elif s[pos] != (":" if st == _COLON else "="):
                    raise _Bad("expected ':' after a dict key" if st == _COLON else
                               "only keyword arguments (name=value) are supported", pos)
                else:
                    fr = self._stack[-1]
                    if st == _EQ and fr.key in fr.cont:
                        raise _Bad(f"keyword argument {fr.key!r} repeated", pos)
                    self._state, self._need, pos = _VALUE, True, pos + 1
            except _Bad as bad:
                self.error = bad.reason
                self._state = _ERROR
                return bad.pos
        return pos

    def _ws(self, s: str, pos: int, end: int) -> int:
        if self.comment:
            nl = s.find("\n", pos, end)
            if nl < 0:
                return end
            self.comment, pos = False, nl + 1
        pos = _WS.match(s, pos, end).end()  # type: ignore[union-attr]
        if pos < end and s[pos] == "#":
            self.comment, pos = True, end
        return pos

    def _keyword(self, s: str, pos: int, end: int) -> int:
        if s[pos] == ")":
            self._close_frame(pos + 1)
            return pos + 1
        m = _IDENT.match(s, pos, end)
        if m is None:
            raise _Bad("only keyword arguments (name=value) are supported", pos)
        if m.end() - pos > MAX_NAME:
            raise _Bad("argument name too long", pos)
        if m.end() >= end:
            self.wait = True
            return pos
        if keyword.iskeyword(m.group()):
            raise _Bad(f"{m.group()!r} is not a valid argument name", pos)
        self._stack[-1].key = m.group()
        self._state = _EQ
        return m.end()

    def _value(self, s: str, pos: int, end: int) -> int:
        ch = s[pos]
        fr = self._stack[-1]
        if ch in "+-":
            self._signed, self._need, self._neg = True, True, self._neg ^ (ch == "-")
            return pos + 1
        if ch in "0123456789.":
            e = _NUM_RUN.match(s, pos, end).end()  # type: ignore[union-attr]
            if e - pos > _MAX_NUMBER:
                raise _Bad("number too long", pos)
            if e >= end:
                self.wait = True
                return pos
            value = _number(s[pos:e], pos)
            value, self._signed, self._neg = -value if self._neg else value, False, False
            self._put(value, e)
            return e
        if self._signed:
            raise _Bad("a sign must be followed by a number", pos)
        if ch in "'\"":
            return self._open_string(s, pos, pos, end, "")
        if ch in "[({":
            if len(self._stack) >= self._max_depth:
                raise _Bad(f"nesting deeper than {self._max_depth} levels", pos)
            if fr.kind == _DICT and fr.key is None:
                raise _Bad("dict keys must be strings", pos)
            kind = _LISTF if ch == "[" else _PAREN if ch == "(" else _BRACE
            self._stack.append(_Frame(kind, [], self._child_path(fr), fr.emits and kind == _LISTF))
            self._need = False
            return pos + 1
        if ch in ")]}" and not self._need and ch == _CLOSER[fr.kind]:
            self._close_frame(pos + 1)
            return pos + 1
        m = _IDENT.match(s, pos, end)
        if m is None:
            raise _Bad(f"unexpected {ch!r} (values must be Python literals)", pos)
        lit = _LITERAL.match(s, pos, end)
        if lit is not None:
            self._put(_LITERALS.get(lit.group()), lit.end())
            return lit.end()
        word, e = m.group(), m.end()
        if e - pos > MAX_NAME:
            raise _Bad("not a literal (name too long)", pos)
        if e >= end:
            self.wait = True
            return pos
        if s[e] in "'\"" and word.lower() in _PREFIXES:
            if "b" in word.lower():
                raise _Bad("bytes are not JSON values", pos)
            return self._open_string(s, pos, e, end, word.lower())
        raise _Bad(f"not a literal: {word!r}", pos)

    def _open_string(self, s: str, start: int, at: int, end: int, prefix: str) -> int:
        q = s[at]
        if end - at < 3 and s[at:end] == q * (end - at):     # '' or a triple quote?
            self.wait = True
            return start
        if s.startswith(q * 3, at):
            q *= 3
        elif s[at + 1] == q:
            self._put("", at + 2)
            return at + 2
        self._q, self._raw, self._fstr, self._parts = q, "r" in prefix, "f" in prefix, []
        fr = self._stack[-1]
        unit = self._units.get(fr.key) if fr.kind == _CALLF and fr.key is not None else None
        self._streaming = unit is not None
        self._split = (LineSplitter() if unit == "line" else StatementSplitter()
                       if unit == "statement" else None)
        self._state = _STRING
        return at + len(q)

    def _string(self, s: str, pos: int, end: int) -> int:
        q = self._q
        e = _BODY[q, self._raw].match(s, pos, end).end()  # type: ignore[union-attr]
        if e > pos:
            seg = s[pos:e]
            if self._fstr and ("{" in seg or "}" in seg):
                raise _Bad("f-string placeholders are not literals", pos)
            if "\x00" in seg:                 # Python reads no source with a NUL in it
                raise _Bad("a NUL character in a string (write \\x00)", pos)
            dec = _decode(seg, self._raw, pos)
            if dec:
                self._parts.append(dec)
                if self._streaming:
                    path = (self._stack[-1].key or "",)
                    for piece in self._split.push(dec) if self._split is not None else [dec]:
                        self._emit(TextChunk(self._index, path, piece))
        if e >= end:
            return end
        if s.startswith(q, e):
            self._state = _AFTER
            self._put("".join(self._parts), e + len(q))
            return e + len(q)
        c = s[e]
        if (end - e < len(q) and q.startswith(s[e:end])) or (c == "\r" and e + 1 == end) or (
                c == "\\" and _ESC_PREFIX[self._raw].fullmatch(s, e, end)):
            self.wait = True                  # a closing quote, CRLF or escape may go on
            return e
        if c in "\r\n":
            raise _Bad("unterminated string (a line break in a single-quoted string)", e)
        raise _Bad(f"invalid escape {s[e:e + 4]!r} in string", e)

    def _after(self, s: str, pos: int) -> int:
        ch = s[pos]
        fr = self._stack[-1]
        kind = fr.kind
        if ch == ",":
            if kind in (_PAREN, _BRACE):      # "(x," is a tuple, "{x," a set
                self._decide(fr, _TUPLE if kind == _PAREN else _SET)
            self._state = _KW if kind == _CALLF else _VALUE
        elif ch == _CLOSER[kind]:
            self._close_frame(pos + 1)
        elif ch == ":" and kind == _BRACE:
            key = fr.cont[0]
            if not isinstance(key, str):
                raise _Bad("dict keys must be strings", pos)
            fr.kind, fr.cont, fr.key, fr.emits = _DICT, {}, key, self._stack[-2].emits
            self._state, self._need = _VALUE, True
        elif ch in "'\"":
            raise _Bad("implicit string concatenation is not supported", pos)
        else:
            raise _Bad(f"unexpected {ch!r} after a value", pos)
        return pos + 1

    def _child_path(self, fr: _Frame) -> JSONPath:
        if fr.kind == _CALLF:
            return (fr.key or "",)
        return fr.path + ((fr.key or "",) if fr.kind == _DICT else (len(fr.cont),))

    def _decide(self, fr: _Frame, kind: int) -> None:
        fr.kind, fr.emits = kind, self._stack[-2].emits
        if fr.emits:
            value_events(self._index, fr.path + (0,), fr.cont[0], self._out)
            self._emit(ItemDone(self._index, fr.path, 0, fr.cont[0]))

    def _close_frame(self, pos: int) -> None:
        fr = self._stack.pop()
        if fr.kind == _CALLF:
            self._state = _DONE
            return
        if fr.kind == _PAREN and len(fr.cont) == 1:
            value = fr.cont[0]                # "(x)" is just x
        else:
            value = {} if fr.kind == _BRACE and not fr.cont else fr.cont
        self._put(value, pos, not fr.emits)

    def _put(self, value: Any, pos: int, quiet: bool = False) -> None:
        """A value is complete: store it in the innermost container, emit what it makes final."""
        fr = self._stack[-1]
        kind, key = fr.kind, fr.key
        self._state, self._need = _AFTER, False
        if kind == _DICT and key is None:
            if not isinstance(value, str):
                raise _Bad("dict keys must be strings", pos)
            if value in fr.cont:
                raise _Bad(f"repeated dict key {value!r}", pos)
            fr.key, self._state = value, _COLON
            return
        path = self._child_path(fr)
        if kind == _CALLF or kind == _DICT:
            fr.cont[key], fr.key = value, None
        else:
            fr.cont.append(value)
        if not fr.emits:
            return
        if quiet:                             # built inside "(...)" or "{...}": all at once
            value_events(self._index, path, value, self._out)
        if kind == _CALLF and key in self._units and isinstance(value, str):
            pieces = (self._split.flush() if self._split is not None else []) \
                if self._streaming else split_text(self._units[key or ""], value)
            self._out.extend(TextChunk(self._index, path, piece) for piece in pieces)
            self._streaming = False
        ev: CallEvent = (FieldDone(self._index, path, value) if kind in (_CALLF, _DICT) else
                         ItemDone(self._index, fr.path, len(fr.cont) - 1, value))
        self._emit(ev)
