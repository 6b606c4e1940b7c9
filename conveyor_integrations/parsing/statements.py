"""Cut streamed source text into complete lines or complete top-level Python statements.

The pieces of a splitter, concatenated, always equal what was pushed. ``StatementSplitter``
gives each top-level statement (with the blank and comment lines before it) as soon as it is
certainly complete: a simple statement at the end of its (logical) line, a compound statement
(``if``/``for``/``def``/decorators...) when the next line at column 0 is not its ``else``/
``except``/... Example::

    >>> s = StatementSplitter()
    >>> s.push("x = 1\\nfor i in r")
    ['x = 1\\n']
    >>> s.push("ange(3):\\n    x += i\\nprint(x)\\n")
    ['for i in range(3):\\n    x += i\\n', 'print(x)\\n']
    >>> s.flush()
    []

The work stays linear in the text: a light tokenizer follows brackets, strings and line
continuations, so ``compile`` runs once per statement (when its logical line ends, or when a
compound statement's next column-0 line arrives), never once per line of a long statement.
"""

from __future__ import annotations

import ast
import re
import warnings

__all__ = ["LineSplitter", "StatementSplitter", "split_text"]

_COMPOUND = re.compile(r"(?:if|for|while|try|with|def|class|async)\b|@")
_MATCH = re.compile(r"match\b")
_CONTINUATION = re.compile(r"(?:else|elif|except|finally)\b")
_DECORATED = re.compile(r"(?:def|class|async)\b|@")
_TOKEN = re.compile(r"[][(){}#'\"\\]")
_IN_STRING = {'"': re.compile(r'["\\\n]'), "'": re.compile(r"['\\\n]"),
              '"""': re.compile(r'["\\]'), "'''": re.compile(r"['\\]")}

# what can make compile(..., PyCF_ONLY_AST) warn: escapes, "1if", return in finally (3.14)
_MAY_WARN = re.compile(r"\\|(?<![A-Za-z_0-9])[0-9]+[A-Za-z_]|finally")
_EMPTY, _OPEN, _COMPOUND_MODE, _BROKEN = range(4)


class LineSplitter:
    """Give each complete line, including its ``\\n``; ``flush`` gives the unfinished rest.

    >>> s = LineSplitter()
    >>> s.push("a\\nb"), s.push("c\\n"), s.flush()
    (['a\\n'], ['bc\\n'], [])
    """

    def __init__(self) -> None:
        self._parts: list[str] = []

    def push(self, text: str) -> list[str]:
        """Add text; return the lines it completed."""
        nl = text.rfind("\n")
        if nl < 0:
            if text:
                self._parts.append(text)
            return []
        if self._parts:
            self._parts.append(text[:nl + 1])
            block = "".join(self._parts)
            self._parts = []
        else:
            block = text[:nl + 1]
        if nl + 1 < len(text):
            self._parts.append(text[nl + 1:])
        lines = block.split("\n")
        lines.pop()
        return [line + "\n" for line in lines]

    def flush(self) -> list[str]:
        """Return what is left (a last line without ``\\n``), if anything."""
        rest = "".join(self._parts)
        self._parts = []
        return [rest] if rest else []


def _parses(src: str) -> bool:
    try:
        if _MAY_WARN.search(src):  # silence SyntaxWarnings (cheaper than always wrapping)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compile(src, "<statement>", "exec", ast.PyCF_ONLY_AST)
        else:
            compile(src, "<statement>", "exec", ast.PyCF_ONLY_AST)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
        return False
    return True


class StatementSplitter:
    """Give each complete top-level Python statement, with the comment lines before it.

    Text that never parses comes out in one piece at :meth:`flush`. Example::

        >>> s = StatementSplitter()
        >>> s.push("@dec\\ndef f():\\n    return [\\n1]\\n")
        []
        >>> s.push("y = f()\\n")
        ['@dec\\ndef f():\\n    return [\\n1]\\n', 'y = f()\\n']
    """

    def __init__(self) -> None:
        self._partial: list[str] = []
        self._reset()

    def _reset(self) -> None:
        self._pending: list[str] = []
        self._plen = 0
        self._trail = -1          # index in _pending where trailing blank/comment lines start
        self._mode = _EMPTY
        self._head = ""           # start of the statement's first line
        self._decos = False       # only decorators so far
        self._retry_at = 0
        self._depth = 0
        self._quote = ""
        self._cont = False

    def push(self, text: str) -> list[str]:
        """Add text; return the statements it completed."""
        out: list[str] = []
        start = 0
        find = text.find
        while True:
            nl = find("\n", start)
            if nl < 0:
                if start < len(text):
                    self._partial.append(text[start:])
                return out
            if self._partial:
                self._partial.append(text[start:nl + 1])
                line = "".join(self._partial)
                self._partial = []
            else:
                line = text[start:nl + 1]
            self._line(line, out)
            start = nl + 1

    def flush(self) -> list[str]:
        """End of text: return what is left (complete or not)."""
        out: list[str] = []
        if self._partial:
            line = "".join(self._partial)
            self._partial = []
            self._line(line, out)
        if self._pending:
            out.append("".join(self._pending))
        self._reset()
        return out

    # -- internals -----------------------------------------------------------------------

    def _append(self, line: str) -> None:
        self._pending.append(line)
        self._plen += len(line)

    def _line(self, line: str, out: list[str]) -> None:
        if self._depth or self._quote or self._cont:     # inside a logical line
            self._append(line)
            self._scan(line)
            if not (self._depth or self._quote or self._cont):
                self._logical_end(out)
            return
        body = line.lstrip(" \t\f")
        if not body or body[0] in "#\r\n":               # blank or comment line
            if self._mode != _EMPTY:
                if body[:1] == "#" and len(body) != len(line):
                    self._trail = -1                     # an indented comment: the block's
                elif self._trail < 0:
                    self._trail = len(self._pending)     # may belong to the next statement
            self._append(line)
            return
        mode = self._mode
        if mode == _COMPOUND_MODE or mode == _BROKEN:
            if len(body) != len(line) or self._continues(body):
                self._trail = -1
                self._append(line)
                self._scan(line)
                return
            self._end_block(out)
            if self._mode == _BROKEN:
                self._trail = -1
                self._append(line)
                self._scan(line)
                return
        # a new statement starts with this line
        self._head = body[:16]
        self._mode = _OPEN
        self._append(line)
        self._scan(line)
        if not (self._depth or self._quote or self._cont):
            self._logical_end(out)

    def _continues(self, body: str) -> bool:
        if _CONTINUATION.match(body):
            return True
        if self._decos and _DECORATED.match(body):
            if body[0] != "@":
                self._decos = False
            return True
        return False

    def _reset_pending(self, rest: list[str]) -> None:
        self._pending = rest
        self._plen = sum(map(len, rest))
        self._trail = -1
        self._mode = _EMPTY

    def _logical_end(self, out: list[str]) -> None:
        if self._mode != _OPEN:
            return
        head = self._head
        if _COMPOUND.match(head):
            self._mode = _COMPOUND_MODE
            self._decos = head[0] == "@"
            return
        src = "".join(self._pending)
        if _parses(src):
            out.append(src)
            self._reset_pending([])
        elif _MATCH.match(head):
            self._mode = _COMPOUND_MODE
            self._decos = False
        else:
            self._mode = _BROKEN
            self._retry_at = 2 * self._plen

    def _end_block(self, out: list[str]) -> None:
        """A column-0 line that does not continue the open block arrived."""
        if self._mode == _BROKEN and self._plen < self._retry_at:
            return
        end = self._trail if self._trail >= 0 else len(self._pending)
        src = "".join(self._pending[:end])
        if _parses(src):
            out.append(src)
            self._reset_pending(self._pending[end:])
        else:
            self._mode = _BROKEN
            self._retry_at = 2 * self._plen

    def _scan(self, line: str) -> None:
        """Follow brackets, strings and backslash continuations through one physical line."""
        pos = 0
        if self._quote:
            pos = self._skip_string(line, 0)
            if pos < 0:
                return
        self._cont = False
        depth = self._depth
        search = _TOKEN.search
        n = len(line)
        while True:
            m = search(line, pos)
            if m is None:
                break
            i = m.start()
            c = line[i]
            if c in "([{":
                depth += 1
            elif c in ")]}":
                if depth:
                    depth -= 1
            elif c == "#":
                break
            elif c == "\\":
                if line.startswith("\n", i + 1) or line.startswith("\r\n", i + 1):
                    self._cont = True
                    break
            else:
                self._quote = c * 3 if line.startswith(c * 3, i) else c
                pos = self._skip_string(line, i + len(self._quote))
                if pos < 0:
                    break
                continue
            pos = i + 1
            if pos >= n:
                break
        self._depth = depth

    def _skip_string(self, line: str, pos: int) -> int:
        """Skip string content; the index after its end, or -1 if it goes on past the line."""
        q = self._quote
        search = _IN_STRING[q].search
        triple = len(q) == 3
        n = len(line)
        while True:
            m = search(line, pos)
            if m is None:
                if triple:
                    return -1
                self._quote = ""           # unterminated single-quoted string: let compile judge
                return n
            i = m.start()
            c = line[i]
            if c == "\\":
                if line.startswith("\n", i + 1) or line.startswith("\r\n", i + 1):
                    return -1               # escaped newline: the string goes on
                pos = i + 2
                continue
            if c == "\n":
                self._quote = ""
                return i
            if triple and not line.startswith(q, i):
                pos = i + 1
                continue
            self._quote = ""
            return i + len(q)


def split_text(unit: str, text: str) -> list[str]:
    """Split a whole text at once by ``unit`` ("line", "statement" or "raw").

    >>> split_text("line", "a\\nb")
    ['a\\n', 'b']
    """
    if unit == "raw":
        return [text] if text else []
    splitter: LineSplitter | StatementSplitter = (
        StatementSplitter() if unit == "statement" else LineSplitter())
    return splitter.push(text) + splitter.flush()
