"""One tool call whose arguments arrive as JSON text: scanner callbacks in, events out.

Shared by the JSON-based formats (hermes, llama3_json, mistral, openai). Example::

    >>> from conveyor_integrations.parsing import HermesParser
    >>> p = HermesParser(id_prefix="x")
    >>> c = CallAssembler(p, 0, "id0", name="f")
    >>> c.feed('{"a": 1} ') , c.scanner.done
    (8, True)
    >>> c.finish(); [type(e).__name__ for e in p._take()]
    ['CallStarted', 'FieldDone', 'CallDone']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..events import (
    CallDone,
    CallMalformed,
    CallStarted,
    Event,
    FieldDone,
    ItemDone,
    JSONPath,
    TextChunk,
)
from .base import ParserBase
from .json_scanner import JsonScanner
from .statements import LineSplitter, StatementSplitter, split_text

__all__ = ["CallAssembler", "value_events"]

_ARG_KEYS = ("arguments", "parameters")


def _splitter(unit: str) -> LineSplitter | StatementSplitter | None:
    if unit == "line":
        return LineSplitter()
    if unit == "statement":
        return StatementSplitter()
    return None


class _Stream:
    __slots__ = ("rel", "splitter")

    def __init__(self, rel: JSONPath, unit: str) -> None:
        self.rel = rel
        self.splitter = _splitter(unit)


class CallAssembler:
    """One call whose arguments arrive as JSON text: scanner callbacks -> events.

    ``wrapper=True``: the JSON is ``{"name": ..., "arguments"|"parameters": {...}}`` and the
    name may come before or after the arguments (events wait until it is known). Otherwise
    ``name`` is given and the JSON is the arguments object. ``feed`` enforces
    ``max_arg_chars``; :attr:`finished` is set once ``CallDone`` or ``CallMalformed`` is out.

    >>> from conveyor_integrations.parsing import Llama3JsonParser
    >>> c = CallAssembler(Llama3JsonParser(), 0, "id0", wrapper=True)
    >>> c.feed('{"arguments": {}, "name": "f"}'), c.name
    (30, 'f')
    """

    def __init__(self, parser: ParserBase, index: int, call_id: str, *,
                 name: str | None = None, wrapper: bool = False) -> None:
        self.index = index
        self.id = call_id
        self.name: str | None = None
        self.finished = False
        self._parser = parser
        self._emit = parser._emit
        self._wrapper = wrapper
        self._args_key: str | int | None = None
        self._room = parser.max_arg_chars
        self._streams: dict[JSONPath, _Stream] = {}
        self._units: Mapping[str, str] = {}
        self._pending: list[Event] | None = []
        self.scanner = JsonScanner(on_member=self._member, on_item=self._item,
                                   on_chunk=self._chunk,
                                   max_depth=parser.max_depth,
                                   depth_offset=1 if wrapper else 0)
        if name is not None:
            self._start(name)

    # -- driving ---------------------------------------------------------------------

    def feed(self, text: str) -> int:
        """Scan more JSON text; return how many characters of it belong to the JSON."""
        sc = self.scanner
        room = self._room
        if len(text) <= room:
            used = sc.feed(text)
            self._room = room - used
            if sc.error is not None:
                self.fail(sc.error)
            return used
        used = sc.feed(text[:room])
        self._room = room - used
        if sc.error is not None:
            self.fail(sc.error)
        elif not sc.ended and used >= room:
            self.fail(f"arguments exceed {self._parser.max_arg_chars} characters")
            self.skip()
        return used

    def feed_to_end(self, text: str) -> int:
        """Like :meth:`feed`, but after a failure keep going to the end of the JSON."""
        used = self.feed(text)
        if self.finished and not self.scanner.ended:
            self.skip()
            if used < len(text):
                used += self.feed(text[used:])
        return used

    def skip(self) -> None:
        """After a failure: let :meth:`feed` just look for the end of the JSON."""
        self._room = 1 << 62
        self.scanner.skip()

    def fail(self, reason: str) -> None:
        """Emit ``CallMalformed`` (once) and drop what the call holds."""
        if self.finished:
            return
        self.finished = True
        self._pending = None
        self._streams = {}
        self._emit(CallMalformed(self.index, self.id, self.name, reason))

    def finish(self, *, empty_is_ok: bool = False) -> None:
        """The call's text ended: emit ``CallDone`` (or ``CallMalformed``)."""
        if self.finished:
            return
        sc = self.scanner
        if not sc.done:
            if empty_is_ok and sc.untouched and self.name is not None:
                root: Any = {}
            else:
                self.fail("truncated arguments JSON")
                return
        else:
            root = sc.value
        args: Any = root
        if self._wrapper:
            if self.name is None:
                self.fail("missing tool name")
                return
            key = self._args_key or next((k for k in _ARG_KEYS if k in root), None)
            args = root.get(key, {}) if key is not None else {}
            if not isinstance(args, dict):
                self.fail("arguments must be a JSON object")
                return
        assert self.name is not None
        self.finished = True
        self._emit(CallDone(self.index, self.id, self.name, args))

    # -- scanner callbacks -------------------------------------------------------------

    def _start(self, name: Any) -> None:
        if not isinstance(name, str):
            self.fail("tool name must be a string")
            return
        if self.name is not None:
            if name != self.name:
                self.fail("two different tool names")
            return
        self.name = name
        tools = self._parser.tools
        if tools is not None and name not in tools:
            self.fail(f"unknown tool {name!r}")
            return
        units = self._parser.streams.get(name)
        if units:
            self._units = units
            for field, unit in units.items():
                st = _Stream((field,), unit)
                if self._wrapper:
                    for key in _ARG_KEYS:
                        self._streams[(key, field)] = st
                else:
                    self._streams[(field,)] = st
            self.scanner.stream_paths = self._streams
        self._emit(CallStarted(self.index, self.id, name))
        pending, self._pending = self._pending, None
        for ev in pending or ():
            if isinstance(ev, FieldDone) and len(ev.path) == 1 and isinstance(ev.value, str):
                first = ev.path[0]
                how = self._units.get(first) if isinstance(first, str) else None
                if how is not None:
                    for piece in split_text(how, ev.value):
                        self._emit(TextChunk(self.index, ev.path, piece))
            self._emit(ev)

    def _rel(self, path: JSONPath) -> JSONPath | None:
        """Path relative to the arguments, or None when outside them."""
        if not self._wrapper:
            return path
        key = path[0]
        if self._args_key is None:
            if key not in _ARG_KEYS:
                return None
            self._args_key = key
        elif key != self._args_key:
            return None
        return path[1:]

    def _member(self, path: JSONPath, value: Any) -> None:
        if self.finished:
            return
        if self._wrapper and len(path) == 1:
            key = path[0]
            if key == "name":
                self._start(value)
            elif key in _ARG_KEYS and self._args_key is None:
                self._args_key = key
            return
        rel = self._rel(path)
        if rel is None:
            return
        if self._pending is not None:
            self._pending.append(FieldDone(self.index, rel, value))
            return
        if self._streams:
            st = self._streams.get(path)
            if st is not None and st.splitter is not None:
                for piece in st.splitter.flush():
                    self._emit(TextChunk(self.index, st.rel, piece))
        self._emit(FieldDone(self.index, rel, value))

    def _item(self, path: JSONPath, i: int, value: Any) -> None:
        if self.finished:
            return
        rel = self._rel(path) if path else None
        if rel is None:
            return
        if self._wrapper and not rel:
            self.fail("arguments must be a JSON object")
            return
        if self._pending is not None:
            self._pending.append(ItemDone(self.index, rel, i, value))
        else:
            self._emit(ItemDone(self.index, rel, i, value))

    def _chunk(self, path: JSONPath, fragment: str) -> None:
        if self.finished:
            return
        if self._wrapper and path[0] != self._args_key:
            if self._args_key is not None or path[0] not in _ARG_KEYS:
                return
            self._args_key = path[0]
        st = self._streams[path]
        if st.splitter is None:
            self._emit(TextChunk(self.index, st.rel, fragment))
        else:
            for piece in st.splitter.push(fragment):
                self._emit(TextChunk(self.index, st.rel, piece))


def value_events(index: int, path: JSONPath, value: Any, out: list[Event],
                 units: Mapping[str, str] | None = None) -> None:
    """Append the events of a value that is final all at once, innermost first.

    Top-level string fields named in ``units`` also get their ``TextChunk`` pieces.

    >>> out: list[Event] = []
    >>> value_events(0, (), {"a": [1]}, out)
    >>> out  # doctest: +NORMALIZE_WHITESPACE
    [ItemDone(index=0, path=('a',), i=0, value=1), FieldDone(index=0, path=('a',), value=[1])]
    """
    if isinstance(value, dict):
        for key, v in value.items():
            p = path + (key,)
            value_events(index, p, v, out)
            if units and not path and isinstance(v, str) and key in units:
                out.extend(TextChunk(index, p, piece) for piece in split_text(units[key], v))
            out.append(FieldDone(index, p, v))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            value_events(index, path + (i,), v, out)
            out.append(ItemDone(index, path, i, v))
