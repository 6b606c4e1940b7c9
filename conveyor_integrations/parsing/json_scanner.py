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

__all__ = ["ChunkCallback", "ItemCallback", "JsonScanner", "MemberCallback"]

MemberCallback = Callable[[JSONPath, Any], None]
"""``(path, value)``: the object member at ``path`` is final."""
ItemCallback = Callable[[JSONPath, int, Any], None]
"""``(array_path, i, value)``: element ``i`` of the array at ``array_path`` is final."""
ChunkCallback = Callable[[JSONPath, str], None]
"""``(path, fragment)``: more decoded content of the streamed string at ``path``."""

_scanstring: Callable[[str, int], tuple[str, int]] = getattr(json.decoder, "scanstring")
_WS = re.compile(r"[ \t\n\r]+")
# A run of string content: plain characters and complete simple or \uXXXX escapes.
_STR_BODY = re.compile(r'(?:[^"\\\x00-\x1f]+|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
_ESC_PREFIX = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?")  # an escape cut by the chunk's end
_HIGH_ESC = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}")
_LONE = re.compile("[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]")
_NUM_RUN = re.compile(r"[-+0-9.eE]+")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_DELIM = frozenset(" \t\n\r,]}")
_LITERALS: dict[str, tuple[str, Any]] = {"t": ("true", True), "f": ("false", False),
                                         "n": ("null", None)}
_SKIP_TOKEN = re.compile(r'[][{}"]')
_SKIP_STR = re.compile(r'["\\]')
_MAX_NUMBER = 10_000

# states
_VALUE, _STRING, _AFTER, _KEY, _COLON, _OBJ_FIRST, _ARR_FIRST, _START = range(8)
_DONE, _ERROR, _SKIP, _SKIPPED = range(8, 12)


class _Malformed(Exception):
    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = pos


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
    a string at its closing quote, a number or literal at its delimiter, a container at its
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
        self._skip_depth = 0
        self._skip_in_str = False
        self._skip_esc = False

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
        return self._state == _DONE or self._state == _SKIPPED

    @property
    def untouched(self) -> bool:
        """Only whitespace has been fed so far."""
        return self._state == _START and not self._carry

    @property
    def depth(self) -> int:
        """How many containers are open."""
        return len(self._stack)

    def skip(self) -> None:
        """Stop parsing and just find the end of the value by counting brackets.

        Used after an error or when a call is refused, so that what follows the value can
        still be found; holds no values, so memory stays constant.
        """
        state = self._state
        if state in (_DONE, _SKIP, _SKIPPED):
            return
        if state == _ERROR:
            state = self._err_state
        self._skip_in_str = state == _STRING
        self._skip_esc = self._skip_in_str and self._carry == "\\"
        self._skip_depth = len(self._stack)
        self._stack = []
        self._parts = []
        self._carry = ""
        self._state = _SKIP

    def feed(self, text: str) -> int:
        """Scan ``text``; return how many of its characters belong to the value."""
        state = self._state
        if state >= _DONE:
            return self._skip_feed(text) if state == _SKIP else 0
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
        except _Malformed as exc:
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

    def _run(self, s: str) -> int:  # noqa: C901 - one flat state machine, on purpose
        n = len(s)
        pos = 0
        state = self._state
        stack = self._stack
        try:
            while pos < n:
                if state == _STRING:
                    e = _STR_BODY.match(s, pos).end()  # type: ignore[union-attr]
                    closing = e < n and s[e] == '"'
                    if e > pos:
                        seg = s[pos:e]
                        if "\\" in seg:
                            dec = _scanstring(seg + '"', 0)[0]
                            if "\\u" in seg:
                                if (not closing and dec and "\ud800" <= dec[-1] <= "\udbff"
                                        and _HIGH_ESC.fullmatch(seg, len(seg) - 6)
                                        and (e == n or (n - e < 6
                                                        and _ESC_PREFIX.fullmatch(s, e)))):
                                    # a high surrogate whose low half may be in the next chunk
                                    dec = dec[:-1]
                                    self._carry = s[e - 6:]
                                    e = n
                                if _LONE.search(dec):
                                    raise _Malformed("lone surrogate in string", e)
                        else:
                            dec = seg
                        if closing and not self._parts:
                            if self._spath is not None and dec:
                                self._on_chunk(self._spath, dec)  # type: ignore[misc]
                            pos = e + 1
                            if self._is_key:
                                stack[-1].key = dec
                                state = _COLON
                            else:
                                state = self._put(dec)
                            continue
                        if dec:
                            self._parts.append(dec)
                            if self._spath is not None:
                                self._on_chunk(self._spath, dec)  # type: ignore[misc]
                    if e >= n:
                        pos = n
                        break
                    if closing:
                        parts = self._parts
                        val = parts[0] if len(parts) == 1 else "".join(parts)
                        self._parts = []
                        pos = e + 1
                        if self._is_key:
                            stack[-1].key = val
                            state = _COLON
                        else:
                            state = self._put(val)
                        continue
                    if s[e] == "\\":
                        if n - e < 6 and _ESC_PREFIX.fullmatch(s, e):
                            self._carry = s[e:]
                            pos = n
                            break
                        raise _Malformed(f"invalid escape {s[e:e + 6]!r}", e)
                    raise _Malformed("control character in string", e)

                ch = s[pos]
                if ch in " \t\n\r":
                    pos = _WS.match(s, pos).end()  # type: ignore[union-attr]
                    continue
                if state == _AFTER:
                    fr = stack[-1]
                    if ch == ",":
                        state = _KEY if fr.is_obj else _VALUE
                        pos += 1
                        continue
                    if ch == ("}" if fr.is_obj else "]"):
                        pos += 1
                        stack.pop()
                        state = self._put(fr.container)
                        if state == _DONE:
                            break
                        continue
                    raise _Malformed(f"expected ',' or {'}' if fr.is_obj else ']'!r}", pos)
                if state == _COLON:
                    if ch == ":":
                        state = _VALUE
                        pos += 1
                        continue
                    raise _Malformed("expected ':'", pos)
                if state == _KEY or state == _OBJ_FIRST:
                    if ch == '"':
                        self._is_key = True
                        self._spath = None
                        state = _STRING
                        pos += 1
                        continue
                    if ch == "}" and state == _OBJ_FIRST:
                        pos += 1
                        fr = stack.pop()
                        state = self._put(fr.container)
                        if state == _DONE:
                            break
                        continue
                    raise _Malformed("expected a string key", pos)
                # a value is expected (_VALUE, _ARR_FIRST, _START)
                if state == _START and ch != "{":
                    raise _Malformed("expected a JSON object", pos)
                if ch == '"':
                    self._is_key = False
                    self._spath = None
                    if self.stream_paths and stack and stack[-1].is_obj:
                        p = stack[-1].path + (stack[-1].key,)
                        if p in self.stream_paths:
                            self._spath = p
                    state = _STRING
                    pos += 1
                    continue
                if ch == "{" or ch == "[":
                    if len(stack) >= self._max_depth:
                        raise _Malformed(f"nesting deeper than {self._depth_label} levels", pos)
                    if not stack:
                        path: JSONPath = ()
                    else:
                        fr = stack[-1]
                        path = fr.path + ((fr.key,) if fr.is_obj else (len(fr.container),))
                    if ch == "{":
                        stack.append(_Frame({}, True, path))
                        state = _OBJ_FIRST
                    else:
                        stack.append(_Frame([], False, path))
                        state = _ARR_FIRST
                    pos += 1
                    continue
                if ch == "]" and state == _ARR_FIRST:
                    pos += 1
                    fr = stack.pop()
                    state = self._put(fr.container)
                    if state == _DONE:
                        break
                    continue
                if ch in "-0123456789":
                    e = _NUM_RUN.match(s, pos).end()  # type: ignore[union-attr]
                    if e == n:
                        if e - pos > _MAX_NUMBER:
                            raise _Malformed("number too long", pos)
                        self._carry = s[pos:]
                        pos = n
                        break
                    tok = s[pos:e]
                    if s[e] not in _DELIM or not _NUMBER.fullmatch(tok):
                        raise _Malformed("invalid number", pos)
                    try:
                        num: Any = (float(tok) if "." in tok or "e" in tok or "E" in tok
                                    else int(tok))
                    except ValueError:
                        raise _Malformed("number too large", pos) from None
                    pos = e
                    state = self._put(num)
                    continue
                lit = _LITERALS.get(ch)
                if lit is not None:
                    word, val = lit
                    end = pos + len(word)
                    if s.startswith(word, pos):
                        if end >= n:
                            self._carry = s[pos:]
                            pos = n
                            break
                        if s[end] not in _DELIM:
                            raise _Malformed(f"invalid literal (expected {word!r})", pos)
                        pos = end
                        state = self._put(val)
                        continue
                    if end > n and word.startswith(s[pos:]):
                        self._carry = s[pos:]
                        pos = n
                        break
                    raise _Malformed(f"invalid literal (expected {word!r})", pos)
                raise _Malformed(f"unexpected character {ch!r}", pos)
        finally:
            self._state = state
        return pos

    def _skip_feed(self, s: str) -> int:
        n = len(s)
        pos = 0
        depth = self._skip_depth
        in_str = self._skip_in_str
        if self._skip_esc and n:
            pos = 1
            self._skip_esc = False
        while pos < n:
            if in_str:
                m = _SKIP_STR.search(s, pos)
                if m is None:
                    pos = n
                    break
                i = m.start()
                if s[i] == "\\":
                    if i + 1 >= n:
                        self._skip_esc = True
                        pos = n
                        break
                    pos = i + 2
                    continue
                in_str = False
                pos = i + 1
                continue
            m = _SKIP_TOKEN.search(s, pos)
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
                    self._state = _SKIPPED
                    break
        self._skip_depth = depth
        self._skip_in_str = in_str
        return pos
