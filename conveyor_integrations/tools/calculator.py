"""A calculator tool: the case where partial execution has nothing to gain.

``calculator_tool()`` makes ``calculate(expression: str) -> str``, decorated with
``partial_tool(start_on=["expression"])``: it runs as soon as the ``expression`` string is
final, a few tokens (the closing ``"}``) before the call is complete. Evaluating an expression
takes microseconds, so starting it early saves nothing measurable; the benchmark keeps it to show
that the library costs nothing either where there is no overlap to win (the paper's calculator).

Hand-written because ``eval`` is unsafe and no small package evaluates arithmetic with bounded
cost: the expression is parsed with :mod:`ast` and only numbers, ``+ - * / // % **``, unary
signs, parentheses, the constants ``pi e tau`` and a few :mod:`math` functions are allowed;
names, attributes, other calls, strings and comprehensions are refused. Powers and integer
results are bounded (``MAX_INT_BITS``) so ``9**9**9`` is an error, not an out-of-memory. Errors
are returned as ``error: ...`` strings so the model can correct itself. Example::

    >>> calculate = calculator_tool("calc_demo")
    >>> calculate("2 * (3 + 4) ** 2 / 7")
    '14.0'
    >>> calculate("sqrt(16) + 10 // 3")
    '7.0'
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ..partial import partial_tool

if TYPE_CHECKING:
    from ..scheduler import Scheduler

__all__ = ["MAX_INT_BITS", "CalculatorError", "calculator_tool", "evaluate"]

MAX_INT_BITS = 4096
"""Integers may not grow past this many bits (about 1233 decimal digits)."""
MAX_LENGTH = 2000
"""Longest expression accepted, in characters."""

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos, ast.USub: operator.neg,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
    "atan": math.atan, "atan2": math.atan2, "hypot": math.hypot, "degrees": math.degrees,
    "radians": math.radians, "floor": math.floor, "ceil": math.ceil, "abs": abs,
    "round": round, "min": min, "max": max,
}


class CalculatorError(ValueError):
    """The expression is not allowed or cannot be evaluated."""


def _check_size(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError(f"result too large (more than {MAX_INT_BITS} bits)")
    return value


def _power(base: Number, exp: Number) -> Number:
    if (isinstance(base, int) and isinstance(exp, int) and exp > 0 and abs(base) > 1
            and exp * math.log2(abs(base)) > MAX_INT_BITS):
        raise CalculatorError(f"result too large (more than {MAX_INT_BITS} bits)")
    result = base ** exp
    if isinstance(result, complex):
        raise CalculatorError("complex result (negative number to a fractional power)")
    return cast(Number, result)


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        raise CalculatorError(f"only numbers are allowed, not {node.value!r}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return cast(Number, _UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise CalculatorError(f"unknown name {node.id!r}")
    if isinstance(node, ast.Call):
        fn = node.func.id if isinstance(node.func, ast.Name) else None
        if fn not in _FUNCTIONS or node.keywords:
            raise CalculatorError(f"calls other than {', '.join(sorted(_FUNCTIONS))} "
                                  "(with positional arguments) are not allowed")
        return _check_size(_FUNCTIONS[fn](*[_eval(a) for a in node.args]))
    raise CalculatorError(f"{type(node).__name__} is not allowed in an expression")


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; raises :class:`CalculatorError` when refused.

        >>> evaluate("-2 ** 3 + max(1, 2.5)")
        -5.5
    """
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, MemoryError, RecursionError) as exc:
        raise CalculatorError(f"invalid expression: {getattr(exc, 'msg', exc)}") from None
    try:
        return _eval(tree)
    except CalculatorError:
        raise
    except RecursionError:
        raise CalculatorError("expression nested too deeply") from None
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise CalculatorError(str(exc)) from None


def calculator_tool(name: str = "calculator", *,
                    scheduler: Scheduler | None = None) -> Callable[[str], str]:
    """A ready ``calculate(expression: str) -> str`` tool (errors come back as ``error: ...``)::

        >>> calculator_tool("calc_demo2")("1 / 0")
        'error: division by zero'
    """

    def calculate(expression: str) -> str:
        """Evaluate an arithmetic expression (+ - * / // % **, parentheses, sqrt, log, sin...)."""
        try:
            return repr(evaluate(expression))
        except CalculatorError as exc:
            return f"error: {exc}"

    calculate.__name__ = calculate.__qualname__ = name
    return cast(Callable[[str], str],
                partial_tool(calculate, start_on=["expression"], scheduler=scheduler))
