"""Lexical helpers of the JSON scanner: scalars (numbers, literals) and bracket skipping.

>>> read_scalar('12.5e1, ', 0), read_scalar("tr", 0)
((125.0, 6), None)
>>> sk = BracketSkipper(depth=1)
>>> sk.feed('"a}", [1]} tail'), sk.ended
(10, True)
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["BracketSkipper", "JsonSyntaxError", "read_scalar"]

_NUM_RUN = re.compile(r"[-+0-9.eE]+")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_DELIM = frozenset(" \t\n\r,]}")
_LITERALS: dict[str, tuple[str, Any]] = {"t": ("true", True), "f": ("false", False),
                                         "n": ("null", None)}
MAX_NUMBER = 10_000


class JsonSyntaxError(Exception):
    """Malformed JSON: ``reason`` and the index ``pos`` of the offending character."""

    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = pos


def read_scalar(s: str, pos: int) -> tuple[Any, int] | None:
    """The number or literal at ``s[pos]`` and where it ends, or None if ``s`` ends first.

    A number is final only once the character after it is seen, and that character must be a
    delimiter (whitespace, ``,``, ``]``, ``}``); anything else raises :class:`JsonSyntaxError`.
    ``true``, ``false`` and ``null`` are final at their last character; what follows them is
    the caller's to check, as after a string or a container, so ``truex`` fails the same way
    however it is cut into chunks.
    """
    n = len(s)
    ch = s[pos]
    if ch in "-0123456789":
        e = _NUM_RUN.match(s, pos).end()  # type: ignore[union-attr]
        if e == n:
            if e - pos > MAX_NUMBER:
                raise JsonSyntaxError("number too long", pos)
            return None
        tok = s[pos:e]
        if s[e] not in _DELIM or not _NUMBER.fullmatch(tok):
            raise JsonSyntaxError("invalid number", pos)
        try:
            return (float(tok) if "." in tok or "e" in tok or "E" in tok else int(tok)), e
        except ValueError:
            raise JsonSyntaxError("number too large", pos) from None
    lit = _LITERALS.get(ch)
    if lit is None:
        raise JsonSyntaxError(f"unexpected character {ch!r}", pos)
    word, value = lit
    end = pos + len(word)
    if end <= n and s.startswith(word, pos):
        return value, end           # final at its last character: nothing extends a literal
    if end >= n and word.startswith(s[pos:]):
        return None
    raise JsonSyntaxError(f"invalid literal (expected {word!r})", pos)


_TOKEN = re.compile(r'[][{}"]')
_IN_STRING = re.compile(r'["\\]')


class BracketSkipper:
    """Find the end of a JSON value without parsing it: count brackets, skip strings.

    Used once a call has failed or been refused, so that what follows its JSON can still be
    found while nothing is kept in memory. Skips until the ``depth`` open containers close.

    ``in_string``: the text starts inside a string; ``escaped``: just after its backslash.
    With ``depth=0`` it waits for a container to open and then close.
    """

    def __init__(self, depth: int = 0, *, in_string: bool = False,
                 escaped: bool = False) -> None:
        self.depth = depth
        self.in_string = in_string
        self.escaped = escaped
        self.ended = False

    def feed(self, s: str) -> int:
        """Skip through ``s``; return how many characters belong to the value."""
        if self.ended:
            return 0
        n = len(s)
        pos = 0
        depth = self.depth
        in_str = self.in_string
        if self.escaped and n:
            pos = 1
            self.escaped = False
        while pos < n:
            if in_str:
                m = _IN_STRING.search(s, pos)
                if m is None:
                    pos = n
                    break
                i = m.start()
                if s[i] == "\\":
                    if i + 1 >= n:
                        self.escaped = True
                        pos = n
                        break
                    pos = i + 2
                    continue
                in_str = False
                pos = i + 1
                continue
            m = _TOKEN.search(s, pos)
            if m is None:
                pos = n
                break
            i = m.start()
            c = s[i]
            pos = i + 1
            if c == '"':
                in_str = True
            elif c == "{" or c == "[":
                depth += 1
            else:
                depth -= 1
                if depth <= 0:
                    self.ended = True
                    break
        self.depth = depth
        self.in_string = in_str
        return pos
