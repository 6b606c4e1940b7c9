"""Fenced code blocks in model text as tool calls: ```` ```python ```` -> ``python(code=...)``.

The code is streamed as ``TextChunk`` pieces (complete statements by default) while it is
decoded; ``FieldDone`` and ``CallDone`` come at the closing fence. Blocks of other languages
and all other text are model text. Example::

    >>> p = FencedCodeParser(id_prefix="d")
    >>> evs = p.feed("Run:\\n```python\\nx = 1\\nprint(x)\\n```\\nDone.") + p.close()
    >>> [(type(e).__name__, getattr(e, "text", "")) for e in evs]  # doctest: +NORMALIZE_WHITESPACE
    [('Text', 'Run:\\n'), ('CallStarted', ''), ('TextChunk', 'x = 1\\n'),
     ('TextChunk', 'print(x)\\n'), ('FieldDone', ''), ('CallDone', ''), ('Text', 'Done.'),
     ('StreamDone', '')]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Unpack

from ..events import CallDone, CallMalformed, CallStarted, FieldDone, TextChunk
from .base import UNITS, ParserBase, ParserOptions, Unit
from .statements import LineSplitter, StatementSplitter

__all__ = ["FencedCodeParser"]

_FENCE_LINE = re.compile(r"[ ]{0,3}(`{3,}|~{3,})([^\n]*)(\n|\Z)")
_FENCE_TAIL = re.compile(r"[ ]{0,3}(?:`{1,2}|~{1,2})?")   # a line start that may become a fence
_CLOSE_FENCE = re.compile(r"[ ]{0,3}(`{3,}|~{3,})[ \t]*(\n|\Z)")
_CLOSE_TAIL = re.compile(r"[ ]{0,3}(?:(?:`+|~+)[ \t]*)?")  # may still become a closing fence
_CANDIDATE = re.compile(r"\n(?=[ ]{0,3}(?:[`~]|\Z))")
_MAX_FENCE_LINE = 1024
_TEXT, _OTHER, _CODE = range(3)


class FencedCodeParser(ParserBase):
    """Each fenced block in one of ``languages`` becomes a call of ``tool`` with ``{field: code}``.

    ``unit`` ("statement", "line" or "raw") sets how the code is streamed and overrides
    ``streams``. Other keywords: see :class:`~conveyor_integrations.parsing.base.ParserBase`.

    >>> p = FencedCodeParser(tool="sh", field="script", languages=("bash",), id_prefix="d")
    >>> [e.args for e in p.feed("```bash\\nls\\n```\\n") if type(e).__name__ == "CallDone"]
    [{'script': 'ls\\n'}]
    """

    def __init__(self, tool: str = "python", field: str = "code",
                 languages: Sequence[str] = ("python", "py"), unit: Unit = "statement",
                 **options: Unpack[ParserOptions]) -> None:
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}; use one of {sorted(UNITS)}")
        options["streams"] = {tool: {field: unit}}
        super().__init__(**options)
        self.tool = tool
        self.field = field
        self.languages = frozenset(lang.lower() for lang in languages)
        self.unit = unit
        self._path = (field,)
        self._state = _TEXT
        self._bol = True
        self._hold = ""
        self._fence = ("`", 3)
        self._index = -1
        self._id = ""
        self._dead = False
        self._parts: list[str] = []
        self._nchars = 0
        self._splitter: LineSplitter | StatementSplitter | None = None

    def _feed_text(self, text: str) -> None:
        if self._hold:
            text = self._hold + text
            self._hold = ""
        pos = 0
        n = len(text)
        while pos < n:
            pos = self._code(text, pos) if self._state == _CODE else self._prose(text, pos)

    def _prose(self, text: str, pos: int) -> int:
        n = len(text)
        if self._bol:
            m = _FENCE_LINE.match(text, pos)
            if m is not None:
                if m.end() - pos > _MAX_FENCE_LINE:
                    pass                       # too long to be a fence line: text
                elif not m.group(3):
                    self._hold = text[pos:]
                    return n
                elif self._fence_line(m.group(1), m.group(2), text[pos:m.end()]):
                    return m.end()
            elif _FENCE_TAIL.fullmatch(text, pos):
                self._hold = text[pos:]
                return n
        m2 = _CANDIDATE.search(text, pos)
        if m2 is None:
            self._text(text[pos:] if pos else text)
            self._bol = False
            return n
        self._text(text[pos:m2.end()])
        self._bol = True
        return m2.end()

    def _fence_line(self, fence: str, info: str, line: str) -> bool:
        """A complete fence line in prose; True if consumed (text or call start)."""
        if fence[0] == "`" and "`" in info:
            return False                       # inline code, not a fence
        self._bol = True
        if self._state == _OTHER:
            ch, length = self._fence
            if fence[0] == ch and len(fence) >= length and not info.strip():
                self._state = _TEXT
            self._text(line)
            return True
        words = info.split()
        self._fence = (fence[0], len(fence))
        if not words or words[0].lower() not in self.languages:
            self._state = _OTHER
            self._text(line)
            return True
        self._state = _CODE
        self._index = self._next_index()
        self._id = self.new_id(self._index)
        self._parts = []
        self._nchars = 0
        self._dead = False
        if self.tools is not None and self.tool not in self.tools:
            self._fail(f"unknown tool {self.tool!r}")
        else:
            self._splitter = (StatementSplitter() if self.unit == "statement" else
                              LineSplitter() if self.unit == "line" else None)
            self._emit(CallStarted(self._index, self._id, self.tool))
        return True

    def _code(self, text: str, pos: int) -> int:
        n = len(text)
        if self._bol:
            m = _CLOSE_FENCE.match(text, pos)
            if (m is not None and self._closes(m.group(1))
                    and m.end() - pos <= _MAX_FENCE_LINE):
                if not m.group(2):
                    self._hold = text[pos:]
                    return n
                self._finish()
                return m.end()
            if n - pos <= _MAX_FENCE_LINE and _CLOSE_TAIL.fullmatch(text, pos):
                self._hold = text[pos:]
                return n
        nl = text.find("\n", pos)
        end = n if nl < 0 else nl + 1
        self._bol = nl >= 0
        if not self._dead:
            piece = text[pos:end] if pos or end < n else text
            self._nchars += len(piece)
            if self._nchars > self.max_arg_chars:
                self._fail(f"arguments exceed {self.max_arg_chars} characters")
            else:
                self._parts.append(piece)
                if self._splitter is None:
                    self._emit(TextChunk(self._index, self._path, piece))
                else:
                    for p in self._splitter.push(piece):
                        self._emit(TextChunk(self._index, self._path, p))
        return end

    def _closes(self, fence: str) -> bool:
        return fence[0] == self._fence[0] and len(fence) >= self._fence[1]

    def _fail(self, reason: str) -> None:
        if not self._dead:
            self._dead = True
            self._parts = []
            self._splitter = None
            self._emit(CallMalformed(self._index, self._id, self.tool, reason))

    def _abort(self, reason: str) -> None:
        if self._state == _CODE:
            self._fail(reason)

    def _finish(self) -> None:
        self._state = _TEXT
        self._bol = True
        if self._dead:
            return
        code = "".join(self._parts)
        self._parts = []
        if self._splitter is not None:
            for p in self._splitter.flush():
                self._emit(TextChunk(self._index, self._path, p))
            self._splitter = None
        self._emit(FieldDone(self._index, self._path, code))
        self._emit(CallDone(self._index, self._id, self.tool, {self.field: code}))

    def _close(self) -> None:
        hold, self._hold = self._hold, ""
        if self._state != _CODE:
            self._text(hold)
            return
        m = _CLOSE_FENCE.fullmatch(hold)
        if m is not None and self._closes(m.group(1)):
            self._finish()
        else:
            self._fail("unterminated code block (no closing fence)")
