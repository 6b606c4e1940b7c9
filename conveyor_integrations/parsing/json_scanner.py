"""An incremental, strict JSON scanner that says when each value is final.

It is hand-written on purpose. jiter (``partial_mode``), pydantic's
``from_json(..., allow_partial=True)`` and partial-json-parser all return a best-effort
*snapshot* of a prefix: none of them says when a field is final (``12`` may still become
``123``, a string may still grow), and re-running them on every token re-parses the whole
prefix, which is quadratic in the length of a call. This scanner keeps its state between
chunks and looks at every character once: it reports each object member and array element at
the moment it becomes final, streams the decoded content of chosen string fields as it
arrives, finds where the value ends, and rejects what ``json.loads`` rejects (plus NaN,
Infinity and lone surrogates). String content is never walked character by character in
Python: one compiled regex takes whole runs and ``json.decoder.scanstring`` (C) decodes them.

Example::

    >>> seen = []
    >>> sc = JsonScanner(on_member=lambda path, value: seen.append((path, value)))
    >>> sc.feed('{"a": [1, 2], "b": "x')
    21
    >>> seen
    [(('a',), [1, 2])]
    >>> sc.feed('y"} trailing')
    3
    >>> sc.done, sc.value, seen[-1]
    (True, {'a': [1, 2], 'b': 'xy'}, (('b',), 'xy'))
"""

from __future__ import annotations

import json.decoder
import re
from collections.abc import Callable, Collection
from typing import Any

from ..events import JSONPath
from .json_tokens import BracketSkipper, JsonSyntaxError, read_scalar

__all__ = ["ChunkCallback", "ItemCallback", "JsonScanner", "MemberCallback"]

MemberCallback = Callable[[JSONPath, Any], None]
"""``(path, value)``: the object member at ``path`` is final."""
ItemCallback = Callable[[JSONPath, int, Any], None]
"""``(array_path, i, value)``: element ``i`` of the array at ``array_path`` is final."""
ChunkCallback = Callable[[JSONPath, str], None]
"""``(path, fragment)``: more decoded content of the streamed string at ``path``."""

_scanstring: Callable[[str, int], tuple[str, int]] = (
    json.decoder.scanstring)  # type: ignore[attr-defined]
_WS = re.compile(r"[ \t\n\r]+")
# A run of string content: plain characters and complete simple or \uXXXX escapes.
_STR_BODY = re.compile(r'(?:[^"\\\x00-\x1f]+|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
_ESC_PREFIX = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?")  # an escape cut by the chunk's end
_HEX = frozenset("0123456789abcdefABCDEF")
_HIGH_ESC = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}")
_LONE = re.compile("[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]")

# states
_VALUE, _STRING, _AFTER, _KEY, _COLON, _OBJ_FIRST, _ARR_FIRST, _START = range(8)
_DONE, _ERROR, _SKIP = range(8, 11)


class _Frame:
    __slots__ = ("container", "is_obj", "key", "path")

    def __init__(self, container: Any, is_obj: bool, path: JSONPath) -> None:
        self.container = container
        self.is_obj = is_obj
        self.key: str = ""
        self.path = path


class JsonScanner:
    """Scan one JSON object fed in chunks of any size.

    ``feed(text)`` returns how many characters of ``text`` it used: all of them while the
    value is open, fewer once it ends (the rest is trailing text) or fails (the index of the
    offending character). Values are reported through the callbacks the moment they are final:
    a string at its closing quote, a number at its delimiter, ``true``/``false``/``null`` at
    their last character (nothing can extend them), a container at its
    closing bracket. Strings whose path is in :attr:`stream_paths` also report their decoded
    content fragment by fragment. ``depth_offset`` containers around the value of interest
    (e.g. a ``{"name": ..., "arguments": ...}`` wrapper) do not count towards ``max_depth``.
    Nothing raises: errors set :attr:`error`. Example::

        >>> sc = JsonScanner()
        >>> sc.feed('{"a": 01}'), sc.error
        (6, 'invalid number at character 6')
    """

    stream_paths: Collection[JSONPath]
    """Paths of string members whose content goes to ``on_chunk`` (may be changed any time)."""
    value: Any
    """The complete value once :attr:`done`."""
    error: str | None
    """Why the input is malformed, once it is."""

    def __init__(self, *, on_member: MemberCallback | None = None,
                 on_item: ItemCallback | None = None, on_chunk: ChunkCallback | None = None,
                 max_depth: int = 256, depth_offset: int = 0) -> None:
        self.stream_paths = ()
        self.value = None
        self.error = None
        self._on_member = on_member
        self._on_item = on_item
        self._on_chunk = on_chunk
        self._max_depth = max_depth + depth_offset
        self._depth_label = max_depth
        self._state = _START
        self._err_state = _START
        self._stack: list[_Frame] = []
        self._carry = ""
        self._parts: list[str] = []
        self._is_key = False
        self._spath: JSONPath | None = None
        self._consumed = 0
        self._skipper: BracketSkipper | None = None

    @property
    def done(self) -> bool:
        """The value is complete and well formed."""
        return self._state == _DONE

    @property
    def failed(self) -> bool:
        """The input is malformed (see :attr:`error`)."""
        return self._state == _ERROR

    @property
    def ended(self) -> bool:
        """The value's end was found: it is :attr:`done`, or :meth:`skip` reached it."""
        return self._state == _DONE or (self._skipper is not None and self._skipper.ended)

    @property
    def untouched(self) -> bool:
        """Only whitespace has been fed so far."""
        return self._state == _START and not self._carry

    def skip(self) -> None:
        """Stop parsing and just find the end of the value by counting brackets.

        Used after an error or when a call is refused, so that what follows the value can
        still be found; holds no values, so memory stays constant.
        """
        state = self._state
        if state in (_DONE, _SKIP):
            return
        if state == _ERROR:
            state = self._err_state
        in_str = state == _STRING
        self._skipper = BracketSkipper(len(self._stack), in_string=in_str,
                                       escaped=in_str and self._carry == "\\")
        self._stack = []
        self._parts = []
        self._carry = ""
        self._state = _SKIP

    def feed(self, text: str) -> int:
        """Scan ``text``; return how many of its characters belong to the value."""
        state = self._state
        if state >= _DONE:
            return self._skipper.feed(text) if self._skipper is not None else 0
        carry = self._carry
        if carry:
            s = carry + text
            base = len(carry)
            self._carry = ""
        else:
            s = text
            base = 0
        try:
            pos = self._run(s)
        except JsonSyntaxError as exc:
            self._err_state = self._state
            self._state = _ERROR
            self.error = f"{exc.reason} at character {self._consumed + exc.pos - base}"
            return max(exc.pos - base, 0)
        used = pos - base
        self._consumed += used
        return used

    # -- internals -----------------------------------------------------------------------

    def _put(self, value: Any) -> int:
        stack = self._stack
        if not stack:
            self.value = value
            return _DONE
        fr = stack[-1]
        if fr.is_obj:
            fr.container[fr.key] = value
            if self._on_member is not None:
                self._on_member(fr.path + (fr.key,), value)
        else:
            lst = fr.container
            lst.append(value)
            if self._on_item is not None:
                self._on_item(fr.path, len(lst) - 1, value)
        return _AFTER

    def _close(self) -> bool:
        """Close the innermost container; True when that ends the whole value."""
        self._state = self._put(self._stack.pop().container)
        return self._state == _DONE

    def _run(self, s: str) -> int:
        n = len(s)
        pos = 0
        stack = self._stack
        while pos < n:
            state = self._state
            if state == _STRING:
                pos = self._string(s, pos, n)
                continue
            ch = s[pos]
            if ch in " \t\n\r":
                pos = _WS.match(s, pos).end()  # type: ignore[union-attr]
                continue
            if state == _AFTER:
                is_obj = stack[-1].is_obj
                if ch == ",":
                    self._state = _KEY if is_obj else _VALUE
                elif ch == ("}" if is_obj else "]"):
                    if self._close():
                        return pos + 1
                else:
                    raise JsonSyntaxError(f"expected ',' or {'}' if is_obj else ']'!r}", pos)
            elif state == _COLON:
                if ch != ":":
                    raise JsonSyntaxError("expected ':'", pos)
                self._state = _VALUE
            elif state == _KEY or state == _OBJ_FIRST:
                if ch == '"':
                    self._is_key = True
                    self._spath = None
                    self._state = _STRING
                elif ch == "}" and state == _OBJ_FIRST:
                    if self._close():
                        return pos + 1
                else:
                    raise JsonSyntaxError("expected a string key", pos)
            elif state == _START and ch != "{":
                raise JsonSyntaxError("expected a JSON object", pos)
            elif ch == '"':
                self._is_key = False
                self._spath = None
                if self.stream_paths and stack[-1].is_obj:
                    p = stack[-1].path + (stack[-1].key,)
                    if p in self.stream_paths:
                        self._spath = p
                self._state = _STRING
            elif ch == "{" or ch == "[":
                if len(stack) >= self._max_depth:
                    raise JsonSyntaxError(f"nesting deeper than {self._depth_label} levels", pos)
                path: JSONPath = ()
                if stack:
                    fr = stack[-1]
                    path = fr.path + ((fr.key,) if fr.is_obj else (len(fr.container),))
                is_obj = ch == "{"
                stack.append(_Frame({} if is_obj else [], is_obj, path))
                self._state = _OBJ_FIRST if is_obj else _ARR_FIRST
            elif ch == "]" and state == _ARR_FIRST:
                if self._close():
                    return pos + 1
            else:
                got = read_scalar(s, pos)
                if got is None:         # wait for the delimiter
                    self._carry = s[pos:]
                    return n
                self._state = self._put(got[0])
                pos = got[1]
                continue
            pos += 1
        return pos

    def _string(self, s: str, pos: int, n: int) -> int:
        """Take string content from ``pos``; return where scanning goes on."""
        e = _STR_BODY.match(s, pos).end()  # type: ignore[union-attr]
        closing = e < n and s[e] == '"'
        if e > pos:
            seg = s[pos:e]
            if "\\" in seg:
                dec = _scanstring(seg + '"', 0)[0]
                if "\\u" in seg:
                    if (not closing and dec and "\ud800" <= dec[-1] <= "\udbff"
                            and _HIGH_ESC.fullmatch(seg, len(seg) - 6)
                            and (e == n or (n - e < 6 and _ESC_PREFIX.fullmatch(s, e)))):
                        # a high surrogate whose low half may come with the next chunk
                        dec = dec[:-1]
                        self._carry = s[e - 6:]
                        e = n
                    if _LONE.search(dec):
                        raise JsonSyntaxError("lone surrogate in string", e)
            else:
                dec = seg
                if not seg.isascii() and _LONE.search(seg):    # raw, as escaped
                    raise JsonSyntaxError("lone surrogate in string", e)
            if dec:
                if self._spath is not None:
                    self._on_chunk(self._spath, dec)  # type: ignore[misc]
                if not (closing and not self._parts):
                    self._parts.append(dec)
        else:
            dec = ""
        if closing:
            if self._parts:
                dec = "".join(self._parts)
                self._parts = []
            if self._is_key:
                fr = self._stack[-1]
                if dec in fr.container:     # a member reported final would not be
                    raise JsonSyntaxError(f"duplicate key {dec!r}", e)
                fr.key = dec
                self._state = _COLON
            else:
                self._state = self._put(dec)
            return e + 1
        if e >= n:
            return n
        if s[e] == "\\":
            if n - e < 6 and _ESC_PREFIX.fullmatch(s, e):
                self._carry = s[e:]
                return n
            m = e + 2                       # quote up to the first wrong character: the
            if s[e + 1:m] == "u":           # same reason however the text was split
                while m < min(n, e + 6) and s[m] in _HEX:
                    m += 1
                m = min(m + 1, e + 6)
            raise JsonSyntaxError(f"invalid escape {s[e:m]!r}", e)
        raise JsonSyntaxError("control character in string", e)
