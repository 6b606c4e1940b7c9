"""LLMCompiler-style plans: one numbered tool call per line, ``$N`` for step N's result.

::

    Thought: I need the population first.
    1. search("population of France")
    2. math("$1 * 2")
    3. join()

Each numbered line is a call (indices 0, 1, 2... in order); ``CallStarted`` comes as soon as
``N. name(`` is seen, the rest when the line ends. Arguments must be literals (strings,
numbers, lists, dicts, True/False/None). ``deps`` of a ``CallDone`` are the indices of the
calls its strings reference with ``$N`` or ``${N}``. ``join()`` ends the plan; it and all
other lines are model text. Example::

    >>> p = PlanParser(id_prefix="d", params={"search": ["query"]})
    >>> evs = p.feed('1. search("x")\\n2. search(query="$1 y")\\njoin()\\n') + p.close()
    >>> [(e.args, e.deps) for e in evs if type(e).__name__ == "CallDone"]
    [({'query': 'x'}, ()), ({'query': '$1 y'}, (0,))]
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Unpack

from ..events import CallDone, CallMalformed, CallStarted, Event
from .assembler import value_events
from .base import ParserBase, ParserOptions

__all__ = ["STEP_REF", "PlanParser", "step_refs"]

_STEP = re.compile(r"[ \t]*(\d+)[ \t]*\.[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\(")
_STEP_PREFIX = re.compile(
    r"[ \t]*(?:\d+(?:[ \t]*(?:\.(?:[ \t]*(?:[A-Za-z_][A-Za-z0-9_]*[ \t]*)?)?)?)?)?")
_JOIN = re.compile(r"[ \t]*(?:\d+[ \t]*\.[ \t]*)?join[ \t]*\(")
STEP_REF = re.compile(r"\$(?:\{(\d+)\}|(\d+))")
"""A reference to step N's result inside a string argument: ``$N`` or ``${N}``."""
_MAX_PREFIX = 256
_UNDECIDED, _TEXTLINE, _CALLLINE, _DEADLINE = range(4)


class _NotLiteral(Exception):
    pass


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        v = node.value
        if v is None or isinstance(v, (str, bool, int, float)):
            return v
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = node.operand
        if isinstance(operand, ast.Constant) and type(operand.value) in (int, float):
            number: Any = operand.value
            return -number if isinstance(node.op, ast.USub) else number
    elif isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    elif isinstance(node, ast.Dict):
        out: dict[str, Any] = {}
        for k, item in zip(node.keys, node.values):
            if not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
                raise _NotLiteral("dict keys must be strings")
            out[k.value] = _literal(item)
        return out
    raise _NotLiteral(f"only literal arguments are allowed, not {ast.unparse(node)!r}")


def step_refs(args: Any) -> set[int]:
    """The step numbers referenced (``$N``/``${N}``) anywhere in ``args``' strings."""
    return {int(m.group(1) or m.group(2)) for s in _strings(args) for m in STEP_REF.finditer(s)}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


class PlanParser(ParserBase):
    """Parse a numbered plan of tool calls, one per line.

    ``params``: tool -> parameter names, to name positional arguments; without it they go to
    ``{"args": [...]}``. Other keywords: see
    :class:`~conveyor_integrations.parsing.base.ParserBase`.

    >>> p = PlanParser(id_prefix="d")
    >>> [e.reason for e in p.feed('1. f("$2")\\n') if type(e).__name__ == "CallMalformed"]
    ['$2 is not an earlier step']
    """

    def __init__(self, *, params: Mapping[str, Sequence[str]] | None = None,
                 **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self.params = {k: tuple(v) for k, v in (params or {}).items()}
        self._steps: dict[int, int] = {}
        self._ended = False
        self._kind = _UNDECIDED
        self._buf: list[str] = []
        self._buflen = 0
        self._head = ""
        self._call: tuple[int, str, str, int, int] = (0, "", "", 0, 0)

    def _feed_text(self, text: str) -> None:
        pos = 0
        n = len(text)
        while pos < n:
            nl = text.find("\n", pos)
            end = n if nl < 0 else nl + 1
            self._piece(text[pos:end] if pos or end < n else text, nl >= 0)
            pos = end

    def _piece(self, piece: str, complete: bool) -> None:
        if self._ended:
            self._text(piece)
            return
        kind = self._kind
        if kind == _UNDECIDED:
            self._buf.append(piece)
            line = "".join(self._buf)
            self._buf = [line]
            m = _STEP.match(line)
            if m is not None and m.end() > _MAX_PREFIX:
                m = None
            if m is not None and m.group(2) != "join":
                self._start(m, line)
                kind = self._kind
            elif m is None and not complete and len(line) < _MAX_PREFIX and \
                    _STEP_PREFIX.fullmatch(line):
                return
            else:
                self._buf = []
                self._head = line[:64]
                self._text(line)
                kind = self._kind = _TEXTLINE
        elif kind == _TEXTLINE:
            self._text(piece)
            if len(self._head) < 64:
                self._head += piece[:64]
        elif kind == _CALLLINE:
            self._buf.append(piece)
            self._buflen += len(piece)
            if self._buflen > self.max_arg_chars:
                self._fail(f"arguments exceed {self.max_arg_chars} characters")
                kind = self._kind
        if complete:
            self._end_line(kind)

    def _end_line(self, kind: int) -> None:
        if kind == _TEXTLINE and _JOIN.match(self._head):
            self._ended = True
        elif kind == _CALLLINE:
            self._finish_call("".join(self._buf))
        self._kind = _UNDECIDED
        self._buf = []
        self._buflen = 0
        self._head = ""

    def _start(self, m: re.Match[str], line: str) -> None:
        index = self._next_index()
        call_id = self.new_id(index)
        name = m.group(2)
        self._call = (index, call_id, name, int(m.group(1)), m.start(2))
        self._buflen = len(line)
        if self.tools is not None and name not in self.tools:
            self._fail(f"unknown tool {name!r}")
            return
        self._kind = _CALLLINE
        self._emit(CallStarted(index, call_id, name))

    def _fail(self, reason: str) -> None:
        index, call_id, name, _, _ = self._call
        self._emit(CallMalformed(index, call_id, name, reason))
        self._kind = _DEADLINE
        self._buf = []

    def _abort(self, reason: str) -> None:
        if self._kind == _CALLLINE:
            self._fail(reason)

    def _finish_call(self, line: str) -> None:
        index, call_id, name, number, start = self._call
        try:
            args = self._arguments(name, line[start:].strip())
            deps: set[int] = set()
            for s in _strings(args):
                for m in STEP_REF.finditer(s):
                    ref = int(m.group(1) or m.group(2))
                    if ref not in self._steps:
                        raise _NotLiteral(f"${ref} is not an earlier step")
                    deps.add(self._steps[ref])
            if number in self._steps:
                raise _NotLiteral(f"step {number} is defined twice")
        except _NotLiteral as exc:
            self._fail(str(exc))
            return
        out: list[Event] = []
        value_events(index, (), args, out, self.streams.get(name))
        for ev in out:
            self._emit(ev)
        self._steps[number] = index
        self._emit(CallDone(index, call_id, name, args, tuple(sorted(deps))))

    def _arguments(self, name: str, expr: str) -> dict[str, Any]:
        try:
            tree = ast.parse(expr, mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise _NotLiteral(f"invalid call: {exc}") from None
        call = tree.body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id == name):
            raise _NotLiteral("a step must be a single call: N. tool(args)")
        positional = [_literal(a) for a in call.args]
        args: dict[str, Any] = {}
        if positional:
            names = self.params.get(name)
            if names is None:
                args["args"] = positional
            elif len(positional) > len(names):
                raise _NotLiteral(f"{name} takes at most {len(names)} positional arguments")
            else:
                args.update(zip(names, positional))
        for kw in call.keywords:
            if kw.arg is None:
                raise _NotLiteral("**kwargs is not allowed")
            if kw.arg in args:
                raise _NotLiteral(f"argument {kw.arg!r} given twice")
            args[kw.arg] = _literal(kw.value)
        return args

    def _close(self) -> None:
        if self._buf or self._kind != _UNDECIDED:
            kind = self._kind
            if kind == _UNDECIDED:
                self._text("".join(self._buf))
            self._end_line(kind)
