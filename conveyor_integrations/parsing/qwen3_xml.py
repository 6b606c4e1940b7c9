"""Qwen3-Coder tool calls: ``<tool_call><function=NAME><parameter=P>raw text</parameter>...``.

The Qwen3-Coder chat template writes each call as XML-like tags, one tag per parameter, and
the values as raw text (code is not JSON-escaped)::

    <tool_call>
    <function=python>
    <parameter=code>
    print("a < b")
    </parameter>
    </function>
    </tool_call>

As in vLLM's ``qwen3_coder`` parser, one leading and one trailing newline of a value are the
template's markup and are dropped, and values convert by the tool's JSON schema (``schemas=``,
tool -> its "parameters" object): integer, number, boolean, null (``null``/``None``), object
and array (``json.loads``, else ``ast.literal_eval``); string stays text. A value that fits
none of its schema's types makes the call malformed. Without a schema for a parameter (or
with type names this parser does not know) the value stays a string, even when it reads as
JSON: the template writes string arguments raw, so ``42`` or ``null`` may well be the text
the model meant (an id, a zip code), and guessing would change a value's type with its
content. Only a value ends at ``</parameter>``; other tags inside a value are its text.

Hand-written, not a regex over the message nor an XML parser: values need not be well-formed
XML (``<`` and ``&`` in code), tags arrive split anywhere between deltas, and the work must
stay linear: each character is scanned a bounded number of times, and only what may still
become a tag (a partial tag, or a value's possible trailing newline) waits for the next delta.
Example::

    >>> p = Qwen3XmlParser(id_prefix="d", streams={"python": {"code": "line"}})
    >>> evs = p.feed("Run.<tool_call>\\n<function=python>\\n<parameter=code>\\nx = 1\\nprint(x)\\n")
    >>> [(type(e).__name__, getattr(e, "text", "")) for e in evs]
    [('Text', 'Run.'), ('CallStarted', ''), ('TextChunk', 'x = 1\\n')]
    >>> evs = p.feed("</parameter>\\n</function>\\n</tool_call>") + p.close()
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

__all__ = ["Qwen3XmlParser"]

_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_FUNC, _FUNC_END = "<function=", "</function>"
_PARAM, _PARAM_END = "<parameter=", "</parameter>"
_WS = re.compile(r"[ \t\n\r]*")
_MAX_NAME = 256
_TEXT, _PRE, _ARGS, _VALUE, _BETWEEN, _SKIP = range(6)
_EXPECT = {_PRE: (_FUNC, _PARAM, _CLOSE), _ARGS: (_PARAM, _FUNC_END, _CLOSE),
           _BETWEEN: (_CLOSE, _FUNC, _OPEN)}
class Qwen3XmlParser(ParserBase):
    """Parse Qwen3-Coder's ``<tool_call>``/``<function=...>``/``<parameter=...>`` tool calls.

    ``schemas``: tool name -> JSON schema of its parameters (an object schema with
    ``properties``), for converting values. A field in ``streams`` streams its text while it
    is decoded unless its schema allows a non-string type. Several calls per message, and
    several ``<function=`` blocks per ``<tool_call>``, are accepted; ``</tool_call>`` may
    stand for a missing ``</function>``. Other keywords: see :class:`ParserBase`.

    >>> schema = {"properties": {"n": {"type": "integer"}}}
    >>> p = Qwen3XmlParser(id_prefix="d", schemas={"f": schema})
    >>> evs = p.feed("<tool_call>\\n<function=f>\\n<parameter=n>\\n7\\n</parameter>\\n</function>")
    >>> evs[-1].args
    {'n': 7}
    """

    def __init__(self, *, schemas: Mapping[str, Mapping[str, Any]] | None = None,
                 **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self._param_types: dict[str, dict[str, frozenset[str]]] = {}   # tool -> param -> types
        for tool, schema in (schemas or {}).items():
            props = schema.get("properties") if isinstance(schema, Mapping) else None
            if isinstance(props, Mapping):
                self._param_types[tool] = {k: schema_types(v) for k, v in props.items()}
        self._state, self._hold, self._nchars = _TEXT, "", 0
        self._index, self._id, self._name, self._param = -1, "", "", ""
        self._args: dict[str, Any] = {}
        self._parts: list[str] = []
        self._fresh = self._stream = False
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
            else:
                pos = self._tag(text, pos)

    def _start(self) -> None:
        self._index = self._next_index()
        self._id, self._name, self._args, self._nchars = self.new_id(self._index), "", {}, 0
        self._state = _PRE

    def _tag(self, text: str, pos: int) -> int:
        """Between the tags of a call: whitespace, then one of the tags expected here."""
        n = len(text)
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= n:
            return n
        state = self._state
        tags = _EXPECT[state]
        for tag in tags:
            if text.startswith(tag, pos):
                return self._on_tag(tag, text, pos + len(tag))
        if n - pos < len(_CLOSE) and any(t.startswith(text[pos:]) for t in tags):
            self._hold = text[pos:]
            return n
        if state == _BETWEEN:               # </tool_call> missing: the call is done; text
            self._state = _TEXT
        else:
            where = ("after <tool_call> (expected <function=NAME>)" if state == _PRE else
                     "between parameters (expected <parameter=NAME> or </function>)")
            self._fail(f"unexpected text at {text[pos]!r} {where}")
        return pos

    def _on_tag(self, tag: str, text: str, pos: int) -> int:
        state = self._state
        if tag in (_CLOSE, _FUNC_END):        # </tool_call> also ends an open function
            if state == _PRE:
                self._fail("empty tool call (no <function=NAME>)")
            elif state == _ARGS:
                self._emit(CallDone(self._index, self._id, self._name, self._args))
            self._state = _TEXT if tag == _CLOSE else _BETWEEN
            return pos
        if tag == _OPEN:
            self._start()
            return pos
        if tag == _PARAM and state == _PRE:
            self._fail("parameter outside a function")
            return pos
        end, name = self._read_name(text, pos)
        if end < 0:
            self._hold = text[pos - len(tag):]
            return len(text)
        if tag == _FUNC:
            if state == _BETWEEN:
                self._start()
            self._name = name
            if not name:
                self._fail("bad function name in <function=...>")
            elif self.tools is not None and name not in self.tools:
                self._fail(f"unknown tool {name!r}")
            else:
                self._emit(CallStarted(self._index, self._id, name))
                self._state = _ARGS
            return end
        if not name:
            self._fail("bad parameter name in <parameter=...>")
        elif name in self._args:
            self._fail(f"duplicate parameter {name!r}")
        else:
            types = self._param_types.get(self._name, {}).get(name, frozenset())
            unit = self.streams.get(self._name, {}).get(name)
            self._stream = unit is not None and types <= {"string"}
            self._splitter = (StatementSplitter() if unit == "statement" else
                              LineSplitter() if unit == "line" else None)
            self._param, self._parts, self._fresh = name, [], True
            self._nchars += len(name)
            self._state = _VALUE
        return end

    @staticmethod
    def _read_name(text: str, start: int) -> tuple[int, str]:
        """``(end, name)`` of ``NAME>`` at ``start``: end -1 if incomplete, name "" if bad."""
        window = text[start:start + _MAX_NAME + 1]
        gt = window.find(">")
        body = window if gt < 0 else window[:gt]
        if "\n" in body or "<" in body:
            return start, ""
        if gt < 0:
            return (-1, "") if len(window) <= _MAX_NAME else (start, "")
        return start + gt + 1, body.strip()

    def _value(self, text: str, pos: int) -> int:
        n = len(text)
        if self._fresh:                       # drop the template's leading newline
            self._fresh = False
            if text[pos] == "\n":
                pos += 1
        i = text.find(_PARAM_END, pos)
        if i >= 0:
            self._piece(text[pos:i - 1 if i > pos and text[i - 1] == "\n" else i])
            if self._state == _VALUE:
                self._end_param()
            return i + len(_PARAM_END)
        j = tag_prefix_at_end(text, pos, _PARAM_END)
        end = j if j >= 0 else n
        if end > pos and text[end - 1] == "\n":   # may be the template's trailing newline
            end -= 1
        self._hold = text[end:]
        self._piece(text[pos:end] if pos or end < n else text)
        return n

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
                self._emit(TextChunk(self._index, (self._param,), p))

    def _end_param(self) -> None:
        raw = "".join(self._parts)
        self._parts = []
        if self._stream and self._splitter is not None:
            for p in self._splitter.flush():
                self._emit(TextChunk(self._index, (self._param,), p))
        types = self._param_types.get(self._name, {}).get(self._param, frozenset())
        value = convert_value(raw, types)
        if value is INVALID:
            self._fail(f"parameter {self._param!r}: {raw[:40]!r} is not a valid "
                       f"{' or '.join(t for t in TYPE_ORDER if t in types)}")
            return
        self._args[self._param] = value
        self._emit(FieldDone(self._index, (self._param,), value))
        self._state = _ARGS

    def _fail(self, reason: str) -> None:
        self._emit(CallMalformed(self._index, self._id, self._name or None, reason))
        self._state = _SKIP
        self._args, self._parts, self._splitter = {}, [], None

    def _abort(self, reason: str) -> None:
        if self._state in (_PRE, _ARGS, _VALUE):
            self._fail(reason)

    def _close(self) -> None:
        hold, self._hold = self._hold, ""
        if self._state in (_TEXT, _BETWEEN):
            self._text(hold)
        elif self._state != _SKIP:
            self._fail({_PRE: "truncated call: no <function=NAME>",
                        _ARGS: "unterminated call: no </function>"}.get(
                self._state, f"unterminated parameter {self._param!r}: no </parameter>"))
