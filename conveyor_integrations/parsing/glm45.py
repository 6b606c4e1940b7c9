"""GLM-4.5/4.6/4.7 tool calls: ``<tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value>``.

The GLM-4.5 and 4.6 chat templates write each call as the tool's name, then one key/value tag
pair per argument, each on its own line; string values are raw text (code is not
JSON-escaped), other values JSON (``tojson``)::

    <tool_call>python
    <arg_key>code</arg_key>
    <arg_value>print("a < b")</arg_value>
    <arg_key>timeout</arg_key>
    <arg_value>30</arg_value>
    </tool_call>

GLM-4.7 writes the same without the newlines
(``<tool_call>python<arg_key>code</arg_key><arg_value>...</arg_value></tool_call>``); both
are read, and text outside calls (``<think>...</think>`` reasoning too) is ``Text``.

A value is its raw text between the tags, exactly (only the key is stripped), converted by
the tool's JSON schema (``schemas=``, tool -> its "parameters" object) as in ``qwen3_xml``
(:mod:`~conveyor_integrations.parsing.schema_values`); a value that fits none of its
schema's types makes the call malformed. Without a schema for an argument (or with type names
this parser does not know) the value stays a string, even when it reads as JSON: the template
writes string arguments raw, so ``42`` or ``null`` may well be the text the model meant (an
id, a zip code), and guessing would change a value's type with its content. Only
``</arg_value>`` ends a value; other tags inside it (``</tool_call>`` too) are its text.

Hand-written, not a regex over the message nor an XML parser (no library parses this format
incrementally, argument by argument): values need not be well-formed XML (``<`` and ``&`` in
code), tags arrive split anywhere between deltas, and the work must stay linear: each
character is scanned a bounded number of times, and only what may still become a tag waits for
the next delta. Example::

    >>> p = Glm45Parser(id_prefix="d", streams={"python": {"code": "line"}})
    >>> evs = p.feed("Run.\\n<tool_call>python\\n<arg_key>code</arg_key>\\n<arg_value>x = 1\\nprint(x)")
    >>> [(type(e).__name__, getattr(e, "text", "")) for e in evs]
    [('Text', 'Run.\\n'), ('CallStarted', ''), ('TextChunk', 'x = 1\\n')]
    >>> evs = p.feed("</arg_value>\\n</tool_call>") + p.close()
    >>> [(type(e).__name__, getattr(e, "text", "")) for e in evs]
    [('TextChunk', 'print(x)'), ('FieldDone', ''), ('CallDone', ''), ('StreamDone', '')]
    >>> evs[2].args
    {'code': 'x = 1\\nprint(x)'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Unpack

from ..events import CallDone, CallMalformed, CallStarted, FieldDone, TextChunk
from .base import ParserBase, ParserOptions, tag_prefix_at_end
from .schema_values import INVALID, TYPE_ORDER, convert_value, schema_types
from .statements import LineSplitter, StatementSplitter

__all__ = ["Glm45Parser"]

_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_KEY, _KEY_END = "<arg_key>", "</arg_key>"
_VAL, _VAL_END = "<arg_value>", "</arg_value>"
_TAGS = (_KEY, _VAL, _CLOSE, _OPEN)
_WS = re.compile(r"[ \t\n\r]*")
_NAME_CHARS = re.compile(r"[^ \t\n\r<]*")
_MAX_NAME = 256
_TEXT, _NAME, _ARGS, _KEYTEXT, _AFTER_KEY, _VALUE, _SKIP = range(7)


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value``, a field of the arguments object (level 1), nests past ``limit``."""
    stack = [(value, 2)]
    while stack:
        v, level = stack.pop()
        if isinstance(v, (dict, list)):
            if level > limit:
                return True
            stack.extend((x, level + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


class Glm45Parser(ParserBase):
    """Parse GLM-4.5/4.6/4.7's ``<tool_call>``/``<arg_key>``/``<arg_value>`` tool calls.

    ``schemas``: tool name -> JSON schema of its parameters (an object schema with
    ``properties``), for converting values. A field in ``streams`` streams its text while it
    is decoded unless its schema allows a non-string type. A missing ``</arg_key>``, a value
    without a key, a duplicate key, an unknown tool (``tools=``), a value that does not fit
    its schema or a call cut short is ``CallMalformed``; parsing resumes at the next
    ``<tool_call>``. Other keywords: see :class:`ParserBase`.

    >>> schema = {"properties": {"n": {"type": "integer"}}}
    >>> p = Glm45Parser(id_prefix="d", schemas={"f": schema})
    >>> evs = p.feed("<tool_call>f<arg_key>n</arg_key><arg_value>7</arg_value></tool_call>")
    >>> evs[-1].args
    {'n': 7}
    """

    def __init__(self, *, schemas: Mapping[str, Mapping[str, Any]] | None = None,
                 **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self._arg_types: dict[str, dict[str, frozenset[str]]] = {}   # tool -> arg -> types
        for tool, schema in (schemas or {}).items():
            props = schema.get("properties") if isinstance(schema, Mapping) else None
            if isinstance(props, Mapping):
                self._arg_types[tool] = {k: schema_types(v) for k, v in props.items()}
        self._state, self._hold, self._word, self._nchars = _TEXT, "", "", 0
        self._index, self._id, self._name, self._key = -1, "", "", ""
        self._args: dict[str, Any] = {}
        self._parts: list[str] = []
        self._stream = False   # the value in progress streams as TextChunks
        self._splitter: LineSplitter | StatementSplitter | None = None

    def _feed_text(self, text: str) -> None:
        if self._hold:
            text = self._hold + text
            self._hold = ""
        pos, n = 0, len(text)
        while pos < n:
            state = self._state
            if state == _VALUE:
                pos = self._value(text, pos)
            elif state == _TEXT:
                i = text.find(_OPEN, pos)
                if i >= 0:
                    self._text(text[pos:i])
                    self._start()
                    pos = i + len(_OPEN)
                    continue
                j = tag_prefix_at_end(text, pos, _OPEN)
                end = j if j >= 0 else n
                self._hold = text[end:]
                self._text(text[pos:end] if pos or end < n else text)
                pos = n
            elif state == _SKIP:   # a malformed call: drop text up to its end (or a new call)
                i = text.find(_CLOSE, pos)
                k = text.find(_OPEN, pos, i if i >= 0 else n)
                if k >= 0 or i >= 0:
                    pos = k if k >= 0 else i + len(_CLOSE)
                    self._state = _TEXT
                    continue
                j = max(tag_prefix_at_end(text, pos, _CLOSE), tag_prefix_at_end(text, pos, _OPEN))
                self._hold = text[j:] if j >= 0 else ""
                pos = n
            elif state == _NAME:
                pos = self._read_name(text, pos)
            elif state == _KEYTEXT:
                pos = self._read_key(text, pos)
            else:
                pos = self._tag(text, pos)

    def _start(self) -> None:
        self._index = self._next_index()
        self._id, self._name, self._word = self.new_id(self._index), "", ""
        self._args, self._nchars = {}, 0
        self._state = _NAME

    def _read_name(self, text: str, pos: int) -> int:
        """The tool's name: after optional whitespace, up to whitespace or a tag."""
        if not self._word:
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        end = _NAME_CHARS.match(text, pos).end()  # type: ignore[union-attr]
        self._word += text[pos:end]
        if len(self._word) > _MAX_NAME:
            self._fail(f"tool name longer than {_MAX_NAME} characters")
        elif end < len(text):
            name, self._name = self._word, self._word
            if not name:
                self._fail("missing tool name after <tool_call>")
            elif self.tools is not None and name not in self.tools:
                self._fail(f"unknown tool {name!r}")
            else:
                self._emit(CallStarted(self._index, self._id, name))
                self._state = _ARGS
        return end

    def _read_key(self, text: str, pos: int) -> int:
        """An argument's name, up to ``</arg_key>``."""
        i = text.find("<", pos)
        end = i if i >= 0 else len(text)
        self._word += text[pos:end]
        if len(self._word) > _MAX_NAME:
            self._fail(f"argument name longer than {_MAX_NAME} characters")
            return end
        if i < 0:
            return end
        key = self._word.strip()
        if text.startswith(_KEY_END, i):
            if not key:
                self._fail("empty argument name in <arg_key></arg_key>")
            elif key in self._args:
                self._fail(f"duplicate argument {key!r}")
            else:
                self._key, self._state = key, _AFTER_KEY
                self._nchars += len(key)
            return i + len(_KEY_END)
        if _KEY_END.startswith(text[i:]):
            self._hold = text[i:]
            return len(text)
        self._fail(f"missing </arg_key> after the argument name {key!r}")
        return i

    def _tag(self, text: str, pos: int) -> int:
        """Between the tags of a call: whitespace, then the tag expected here."""
        n = len(text)
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= n:
            return n
        tag = next((t for t in _TAGS if text.startswith(t, pos)), None)
        if tag is None and n - pos < len(_CLOSE) and any(t.startswith(text[pos:]) for t in _TAGS):
            self._hold = text[pos:]           # may still become a tag
            return n
        end = pos + len(tag or "")
        if self._state == _AFTER_KEY:
            if tag == _VAL:
                self._open_value()
                return end
            self._fail(f"argument {self._key!r} has no value (expected <arg_value>)")
        elif tag == _KEY:
            self._word, self._state = "", _KEYTEXT
            return end
        elif tag == _CLOSE:
            self._emit(CallDone(self._index, self._id, self._name, self._args))
            self._state = _TEXT
            return end
        elif tag == _VAL:
            self._fail("value without a key: <arg_value> where <arg_key> was expected")
        elif tag == _OPEN:
            self._fail("missing </tool_call> before the next <tool_call>")
        else:
            where = "after an argument" if self._args else "after the tool name"
            self._fail(f"unexpected text at {text[pos]!r} {where} "
                       "(expected <arg_key> or </tool_call>)")
        return pos                            # _SKIP reads the tag again

    def _open_value(self) -> None:
        types = self._arg_types.get(self._name, {}).get(self._key, frozenset())
        unit = self.streams.get(self._name, {}).get(self._key)
        self._stream = unit is not None and types <= {"string"}
        self._splitter = (StatementSplitter() if unit == "statement" else
                          LineSplitter() if unit == "line" else None)
        self._parts, self._state = [], _VALUE

    def _value(self, text: str, pos: int) -> int:
        i = text.find(_VAL_END, pos)
        if i >= 0:
            self._piece(text[pos:i])
            if self._state == _VALUE:
                self._end_value()
            return i + len(_VAL_END)
        j = tag_prefix_at_end(text, pos, _VAL_END)
        end = j if j >= 0 else len(text)
        self._hold = text[end:]
        self._piece(text[pos:end] if pos or j >= 0 else text)
        return len(text)

    def _piece(self, s: str) -> None:
        if not s:
            return
        self._nchars += len(s)
        if self._nchars > self.max_arg_chars:
            self._fail(f"arguments exceed {self.max_arg_chars} characters")
            return
        self._parts.append(s)
        if self._stream:
            pieces = [s] if self._splitter is None else self._splitter.push(s)
            for p in pieces:
                self._emit(TextChunk(self._index, (self._key,), p))

    def _end_value(self) -> None:
        raw = "".join(self._parts)
        self._parts = []
        if self._stream and self._splitter is not None:
            for p in self._splitter.flush():
                self._emit(TextChunk(self._index, (self._key,), p))
        types = self._arg_types.get(self._name, {}).get(self._key, frozenset())
        value = convert_value(raw, types)
        if value is INVALID:
            self._fail(f"argument {self._key!r}: {raw[:40]!r} is not a valid "
                       f"{' or '.join(t for t in TYPE_ORDER if t in types)}")
        elif isinstance(value, (dict, list)) and _too_deep(value, self.max_depth):
            self._fail(f"argument {self._key!r}: nesting deeper than {self.max_depth} levels")
        else:
            self._args[self._key] = value
            self._emit(FieldDone(self._index, (self._key,), value))
            self._state = _ARGS

    def _fail(self, reason: str) -> None:
        self._emit(CallMalformed(self._index, self._id, self._name or None, reason))
        self._state = _SKIP
        self._args, self._parts, self._splitter, self._word = {}, [], None, ""

    def _abort(self, reason: str) -> None:
        if self._state not in (_TEXT, _SKIP):
            self._fail(reason)

    def _close(self) -> None:
        hold, self._hold = self._hold, ""
        if self._state == _TEXT:
            self._text(hold)
        elif self._state != _SKIP:
            self._fail({_NAME: "truncated call: nothing after the tool name",
                        _ARGS: "unterminated call: no </tool_call>",
                        _KEYTEXT: "unterminated argument name: no </arg_key>",
                        _AFTER_KEY: f"truncated call: argument {self._key!r} has no value"}.get(
                self._state, f"unterminated argument {self._key!r}: no </arg_value>"))
