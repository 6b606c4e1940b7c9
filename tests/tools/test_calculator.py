"""Calculator: safe arithmetic, clear refusals, and the same result early or on the complete call."""

from __future__ import annotations

import math

import pytest

from conveyor_integrations.events import CallDone, CallStarted, FieldDone
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.tools.calculator import (
    MAX_INT_BITS,
    CalculatorError,
    calculator_tool,
    evaluate,
)


@pytest.mark.parametrize(("expression", "value"), [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("7 / 2", 3.5), ("7 // 2", 3), ("-7 % 3", 2),
    ("2 ** 10", 1024), ("-2 ** 2", -4), ("+-+3", -3), ("2 ** -1", 0.5), ("1e3 + 0.5", 1000.5),
    ("sqrt(16)", 4.0), ("max(1, 2.5, -3)", 2.5), ("round(2.675, 2)", 2.67), ("abs(-3)", 3),
    ("floor(pi)", 3), ("log(e)", 1.0), ("hypot(3, 4)", 5.0), ("  0x10 + 0b1  ", 17),
    ("2 ** 4000", 2 ** 4000),
])
def test_values(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(("expression", "message"), [
    ("1 / 0", "division by zero"),
    ("5 % 0", "modulo by zero"),
    ("sqrt(-1)", "math domain error"),
    ("(-8) ** 0.5", "complex result"),
    ("9 ** 9 ** 9", f"result too large (more than {MAX_INT_BITS} bits)"),
    ("2 ** 5000", "result too large"),
    ("(2 ** 4000) * (2 ** 4000)", "result too large"),
    ("10.0 ** 400", "Numerical result out of range"),
    ("1 +", "invalid expression"),
    ("", "invalid expression"),
    ("1" * 3000, "longer than"),
    ("(" * 300 + "1" + ")" * 300, "invalid expression"),
])
def test_errors(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate(expression)


@pytest.mark.parametrize("expression", [
    "__import__('os').system('true')", "(1).__class__", "x + 1", "open('f')",
    "sqrt(x=4)", "math.sqrt(4)", "[1, 2]", "'a' * 3", "True + 1", "lambda: 1",
    "[i for i in range(3)]", "1 if 1 else 2", "1 < 2", "1 << 3", "~1", "not 1", "(1, 2)",
    "sqrt.__call__(4)", "(x := 1)", "{1: 2}", "f'{1}'",
])
def test_refuses_names_attributes_and_calls_outside_the_allowed_set(expression: str) -> None:
    with pytest.raises(CalculatorError):
        evaluate(expression)


def test_tool_returns_error_strings(sched: Scheduler) -> None:
    calc = calculator_tool(scheduler=sched)
    assert calc("6 * 7") == "42"
    assert calc("1 / 3") == repr(1 / 3)
    assert calc("1 / 0") == "error: division by zero"
    assert calc("y").startswith("error: unknown name 'y'")


def test_partial_equals_complete(sched: Scheduler) -> None:
    calc = calculator_tool(scheduler=sched)
    expressions = ["1 + 1", "2 ** 0.5", "tau / 2 - pi", "1 / 0", "nope()", "(3 + 4", "10 // 3 * 3",
                   "degrees(atan2(1, 1))", "2 ** 64 - 1"]
    s = sched.session(tools=[calc])
    for i, expr in enumerate(expressions):
        s.handle([CallStarted(i, f"c{i}", "calculator"), FieldDone(i, ("expression",), expr),
                  CallDone(i, f"c{i}", "calculator", {"expression": expr})])
    for i, expr in enumerate(expressions):
        found, early = sched.claim(f"c{i}")
        assert found and early == calc(expr)
    s.finish()                          # decoding ends after every tool ran: they were early
    assert calc("degrees(atan2(1, 1))") == repr(math.degrees(math.atan2(1, 1)))
    assert all(t.early for t in s.timings.values())
