"""Python tool: statement-by-statement execution gives exactly the complete program's result.

Also end to end with the scheduler: statements run while the code is still being decoded, and
``abort_on_error`` stops decoding at the first failing statement.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor_integrations import EarlyAbort, partial_tool
from conveyor_integrations.backends import ChatRequest, Replay
from conveyor_integrations.events import CallDone, CallStarted, FieldDone, TextChunk
from conveyor_integrations.parsing import get_parser
from conveyor_integrations.parsing.statements import split_text
from conveyor_integrations.policy import BoundTools
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.tools.python import (
    Limits,
    PythonExecution,
    arun_python_code,
    partial_python,
    python_tool,
    run_python_code,
)
from conveyor_integrations.turn import run_turn


async def run_partial(code: str, pieces: list[str] | None = None,
                      **kw: object) -> tuple[str, PythonExecution]:
    """Feed ``code`` statement by statement (as the parser would), then finish."""
    ex = PythonExecution(**kw)  # type: ignore[arg-type]
    await ex.start(CallStarted(0, "c1", "run_python"))
    for piece in split_text("statement", code) if pieces is None else pieces:
        await ex.feed(TextChunk(0, ("code",), piece))
    await ex.feed(FieldDone(0, ("code",), code))
    return await ex.finish({"code": code}), ex


async def both(code: str, **kw: object) -> tuple[str, str, PythonExecution]:
    partial, ex = await run_partial(code, **kw)
    return partial, await arun_python_code(code), ex


PRELUDE = "import sys, warnings\nx = 1\n"
STATEMENTS = [
    "x = {n}\n", "y = x + {n}\n", "print(x, y)\n", "print('err', x, file=sys.stderr)\n",
    "for i in range({k}):\n    print(i * x)\n",
    "def f(a):\n    return a * {n} // (x - {n})\n", "print(f(x))\n",
    "if x > {n}:\n    print('big')\nelif x < 0:\n    pass\nelse:\n    print('small')\n",
    "try:\n    1 / (x - x)\nexcept ZeroDivisionError as e:\n    print('caught', e)\n",
    "class C:\n    v = {n}\n\n    def m(self):\n        return self.v + x\n", "print(C().m())\n",
    "# a comment\n\n", "'''a string statement'''\n", "print(__doc__)\n",
    "print({{'a', 'b', 'c', str(x)}})\n", "warnings.warn('careful %d' % x)\n",
    "assert x != {n}, 'x was {n}'\n", "raise ValueError('boom %d' % x)\n", "print(nope)\n",
    "sys.exit({k})\n", "sys.exit('bye')\n", "z = [\n    x,\n    {n},\n]\nprint(z)\n",
    "while x > {n}:\n    x -= 1\n", "print('no newline', end='')\n",
]
programs = st.lists(st.tuples(st.sampled_from(STATEMENTS), st.integers(0, 4), st.integers(0, 3)),
                    min_size=1, max_size=10).map(
    lambda parts: PRELUDE + "".join(t.format(n=n, k=k) for t, n, k in parts))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs)
def test_partial_equals_complete_on_generated_programs(code: str) -> None:
    partial, complete, ex = asyncio.run(both(code))
    assert partial == complete
    assert ex.statements, "nothing ran statement by statement"


@pytest.mark.parametrize("code", [
    # a SyntaxError anywhere: the complete program runs nothing, so neither may the result show
    "print('ran early')\nx = (\n",
    "print(1)\nfrom __future__ import annotations\n",
    # a docstring, __future__ flags carried from one statement to the next, stderr interleaving
    ('"""doc"""\nfrom __future__ import annotations\ndef g(a: Undefined): pass\n'
     "print(g.__annotations__, __doc__)\nimport sys\nprint(1)\nprint(2, file=sys.stderr)\n"),
    # tracebacks through functions defined by earlier statements show the right lines
    "def f():\n    return g()\n\ndef g():\n    raise KeyError('k')\n\nprint('x')\nf()\n",
    "import sys\nprint('before')\nsys.exit(3)\nprint('after')\n",
    "x = 1\r\ny = 2\rprint(x + y)\n1/0\n",
])
def test_partial_equals_complete_on_edge_cases(code: str) -> None:
    partial, complete, _ = asyncio.run(both(code))
    assert partial == complete


def test_compile_warnings_come_with_their_statement() -> None:
    # a complete run shows them before any output; statement by statement, they come when
    # their statement is compiled (the program is not run again for them)
    code = "print(1)\nif 1 is 1:\n    print(2)\n"
    partial, complete, _ = asyncio.run(both(code))
    assert partial.startswith("1\n<code>:2: SyntaxWarning") and partial.endswith("2\n")
    assert sorted(partial.splitlines()) == sorted(complete.splitlines())


def test_pieces_that_differ_from_the_final_code_are_not_rerun() -> None:
    code = "print('final')\n"
    partial, ex = asyncio.run(run_partial(code, pieces=["print('early')\n"]))
    assert partial.startswith("early\n[sandbox] the final code differs") and "final\n" not in partial
    assert ex.statements[0].output == "early\n"


def test_per_statement_output_and_times() -> None:
    code = "import time\nprint('a')\ntime.sleep(0.05)\nprint('b')\n1/0\nprint('never')\n"
    _, ex = asyncio.run(run_partial(code))
    assert [s.status for s in ex.statements] == ["ok", "ok", "ok", "ok", "error"]
    assert [s.output for s in ex.statements][:4] == ["", "a\n", "", "b\n"]
    assert "ZeroDivisionError" in ex.statements[4].output and ex.statements[4].line == 5
    assert all(s.started <= s.ended for s in ex.statements)
    assert ex.statements[2].ended - ex.statements[2].started >= 0.04


def test_abort_on_error_raises_from_the_next_feed() -> None:
    async def go() -> str:
        ex = PythonExecution(abort_on_error=True)
        await ex.start(CallStarted(0, "c1", "run_python"))
        try:
            await ex.feed(TextChunk(0, ("code",), "print('hi')\n"))
            await ex.feed(TextChunk(0, ("code",), "int('x')\n"))
            for _ in range(200):
                await asyncio.sleep(0.02)
                await ex.feed(TextChunk(0, ("code",), "pass\n"))
        except EarlyAbort as exc:
            return exc.reason
        finally:
            await ex.cancel()
        raise AssertionError("no EarlyAbort")

    reason = asyncio.run(go())
    assert reason.startswith("hi\nTraceback (most recent call last):")
    assert "ValueError: invalid literal for int()" in reason


def test_statement_wall_clock_limit_in_partial_execution() -> None:
    code = "print('start')\nwhile True:\n    pass\n"
    out, ex = asyncio.run(run_partial(code, limits=Limits(statement_s=0.5, wall_s=30)))
    assert out == "start\n[sandbox] stopped: a statement ran past its wall-clock limit of 0.5 s\n"
    assert ex.statements[-1].status == "killed"


def test_statements_run_while_the_code_is_decoded(sched: Scheduler) -> None:
    execs: list[PythonExecution] = []

    def make() -> PythonExecution:
        execs.append(PythonExecution())
        return execs[-1]

    @partial_tool(execution=make)            # fenced code blocks always stream statements
    def python(code: str) -> str:
        return run_python_code(code)

    lines = ["Let me compute.\n", "```python\n", "import time\n", "print('first')\n",
             "time.sleep(0.1)\n", "total = sum(range(10))\n", "print(total)\n"]
    parser, s, call_ids = get_parser("fenced_code"), sched.session(tools=[python]), []

    def decoded(text: str) -> None:
        events = parser.feed(text)
        call_ids.extend(e.id for e in events if isinstance(e, CallStarted))
        s.handle(events)

    for line in lines:
        decoded(line)
        time.sleep(0.2)                               # the model decodes the next line
    decode_end = time.perf_counter()
    decoded("```\nDone.")
    s.handle(parser.close())
    found, result = sched.claim(call_ids[0])
    code = "".join(lines[2:])
    assert found and result == run_python_code(code) == "first\n45\n"
    statements = execs[0].statements
    assert len(statements) == 5
    assert statements[0].started < decode_end       # ran before the code was complete
    assert statements[1].ended < decode_end
    assert python(code) == result                   # the tool still works when invoked directly


async def test_abort_on_error_stops_decoding(sched: Scheduler) -> None:
    tool = python_tool("python", abort_on_error=True, scheduler=sched)
    text = "```python\nx = 1\nraise ValueError('boom')\n" + "y = x + 1\n" * 150 + "```\n"
    replay = Replay(text, tokens_per_s=150, seed=1, tool_format="fenced_code")
    result = await run_turn(replay, ChatRequest([]), parser=get_parser("fenced_code"),
                            session=sched.session(tools=[tool]))
    assert result.abort is not None and "ValueError: boom" in result.abort.reason
    assert result.aborted_call is not None and not result.aborted_call_complete
    full = Replay(text, tokens_per_s=None, seed=1, tool_format="fenced_code")
    assert len([d async for d in full.stream(ChatRequest([]))]) == full.emitted[0]
    assert replay.emitted[0] < full.emitted[0] / 2   # decoding stopped well before the end
    with pytest.raises(EarlyAbort):
        sched.claim(result.aborted_call.id)


def test_ready_tool_hands_over_the_early_result(sched: Scheduler) -> None:
    run = python_tool("python", timeout=20, scheduler=sched)
    code = "x = 6\nprint(x * 7)\n"
    s = sched.session(tools=[run])
    s.handle([CallStarted(0, "c1", "python")] +
             [TextChunk(0, ("code",), p) for p in split_text("statement", code)] +
             [FieldDone(0, ("code",), code)])
    s.handle([CallDone(0, "c1", "python", {"code": code})])
    assert run(code) == "42\n"
    assert sched.pending() == 0


def test_langchain_structured_tool() -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.tools import StructuredTool

    sched = Scheduler(claim_timeout=5.0)
    try:
        def run_python(code: str) -> str:
            """Run Python code and return what it printed."""
            return run_python_code(code)

        tool = partial_python(StructuredTool.from_function(run_python), scheduler=sched)
        assert BoundTools([tool]).streams() == {"run_python": {"code": "statement"}}
        code = "print('from langchain')\n"
        s = sched.session(tools=[tool])
        s.handle([CallStarted(0, "call_1", "run_python"), TextChunk(0, ("code",), code),
                  FieldDone(0, ("code",), code),
                  CallDone(0, "call_1", "run_python", {"code": code})])
        msg = tool.invoke({"name": "run_python", "args": {"code": code}, "id": "call_1",
                           "type": "tool_call"})
        assert msg.content == "from langchain\n"
        assert sched.pending() == 0
    finally:
        sched.close()


def test_ready_made_tool_runs_when_invoked_directly() -> None:
    from conveyor_integrations.tools import run_python

    assert run_python("print(40 + 2)") == "42\n"
