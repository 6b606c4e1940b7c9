"""Plan tool: steps start as their lines arrive, in dependency order, concurrently when independent;
the partial result equals running the complete plan; malformed plans and failing steps are clear."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor_integrations.backends import ChatRequest, Replay
from conveyor_integrations.events import CallDone, CallStarted, TextChunk
from conveyor_integrations.parsing import get_parser
from conveyor_integrations.parsing.statements import split_text
from conveyor_integrations.policy import BoundTools
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.tools.plan import (
    PlanError,
    PlanExecution,
    PlanRunner,
    StepRecord,
    arun_plan_text,
    plan_tool,
    run_plan_text,
)
from conveyor_integrations.turn import run_turn

POP = {"France": 68, "Germany": 84, "Italy": 59}
PLAN = ('Thought: add up the populations.\n'
        '1. search("France")\n'
        '2. search("Germany")\n'
        '3. math("$1 + $2")\n'
        '4. math(expr="${3} * 2")\n'
        '5. search("Italy")\n'
        '6. fmt("total=$4, italy=$5, sum=$3")\n'
        'join()')
EXPECTED = ("1. search: 68\n2. search: 84\n3. math: 152\n4. math: 304\n5. search: 59\n"
            "6. fmt: total=304, italy=59, sum=152")


def make_tools(log: list[tuple[str, float, float]] | None = None,
               fail: str | None = None) -> dict[str, Callable[..., Any]]:
    """Sync step tools; unless one fails, ``search`` of France and Germany meet at a barrier,
    so the plan only succeeds when steps 1 and 2 run at the same time."""
    barrier = threading.Barrier(2, timeout=10)

    def timed(key: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            time.sleep(0.02)
            return fn()
        finally:
            if log is not None:
                log.append((key, start, time.perf_counter()))

    def search(query: str) -> int:
        def go() -> int:
            if query == fail:
                raise ValueError(f"no results for {query}")
            if fail is None and query in ("France", "Germany"):
                barrier.wait()
            return POP[query]
        return int(timed(query, go))

    def math(expr: str) -> int:
        def go() -> int:
            a, op, b = expr.split()
            return int(a) + int(b) if op == "+" else int(a) * int(b)
        return int(timed(expr, go))

    def fmt(text: str) -> str:
        return str(timed("fmt", lambda: text))

    return {"search": search, "math": math, "fmt": fmt}


async def run_partial(tools: dict[str, Callable[..., Any]], plan: str,
                      gap: float = 0.0) -> tuple[str, PlanExecution, float]:
    """Feed ``plan`` line by line (as the parser would), ``gap`` seconds apart; then finish."""
    ex = PlanExecution(tools)
    await ex.start(CallStarted(0, "c1", "run_plan"))
    for piece in split_text("line", plan):
        await ex.feed(TextChunk(0, ("plan",), piece))
        await asyncio.sleep(gap)
    last_line = asyncio.get_running_loop().time()
    return await ex.finish({"plan": plan}), ex, last_line


def check_order(steps: dict[int, StepRecord]) -> None:
    for rec in steps.values():
        assert rec.started is not None and rec.ended is not None
        for d in rec.deps:
            dep_end = steps[d].ended
            assert dep_end is not None and dep_end <= rec.started, (rec.number, d)


def test_complete_plan() -> None:
    assert run_plan_text(make_tools(), PLAN) == EXPECTED


async def test_steps_start_as_lines_arrive_in_dependency_order() -> None:
    result, ex, last_line = await run_partial(make_tools(), PLAN, gap=0.05)
    assert result == EXPECTED
    steps = ex.runner.steps
    assert [steps[n].deps for n in range(1, 7)] == [(), (), (1, 2), (3,), (), (3, 4, 5)]
    started = steps[1].started
    assert started is not None and started < last_line       # before the plan text was complete
    check_order(steps)
    s1, s2 = steps[1], steps[2]                               # independent steps overlap
    assert s1.started is not None and s2.started is not None and s1.ended and s2.ended
    assert s2.started < s1.ended and s1.started < s2.ended


async def test_exact_reference_keeps_the_value_and_positional_args() -> None:
    async def pair(a: int, b: int = 0) -> list[int]:
        return [a, b]

    def count(items: list[int]) -> int:
        return len(items)

    plan = '1. pair(1, b=2)\n2. count("$1")\n3. count(["$1", "${2}"])\njoin()\n'
    assert await arun_plan_text({"pair": pair, "count": count}, plan) == \
        "1. pair: [1, 2]\n2. count: 2\n3. count: 2"


def test_failing_step_fails_its_dependents() -> None:
    expected = ("1. search: error: ValueError: no results for France\n2. search: 84\n"
                "3. math: error: step 3 (math) not run: step 1 (search) failed: ValueError: no "
                "results for France\n"
                "4. math: error: step 4 (math) not run: step 3 (math) failed: step 3 (math) not "
                "run: step 1 (search) failed: ValueError: no results for France\n"
                "5. search: 59\n"
                "6. fmt: error: step 6 (fmt) not run: step 3 (math) failed: step 3 (math) not "
                "run: step 1 (search) failed: ValueError: no results for France")
    tools = make_tools(fail="France")
    assert run_plan_text(tools, PLAN) == expected
    partial, _, _ = asyncio.run(run_partial(tools, PLAN))
    assert partial == expected


@pytest.mark.parametrize(("plan", "message"), [
    ('1. fmt("$2")\n2. fmt("x")\n', r"\$2 is not an earlier step"),
    ('1. fmt("x")\n2. fmt("$7")\n', r"\$7 is not an earlier step"),
    ('1. fmt("x")\n2. nope("x")\n', "unknown tool 'nope'"),
    ('1. fmt(text=open("f"))\n', "only literal arguments"),
    ('1. fmt("x")\n1. fmt("y")\n', "defined twice"),
])
def test_malformed_plans_are_clear_errors(plan: str, message: str) -> None:
    tools = make_tools()
    with pytest.raises(PlanError, match=message):
        run_plan_text(tools, plan)
    with pytest.raises(PlanError, match=message):
        asyncio.run(run_partial(tools, plan))


async def test_runner_rejects_cycles_and_later_steps_fed_directly() -> None:
    tools = {"f": lambda x: x}
    runner = PlanRunner(tools)
    runner.add(CallDone(0, "a", "f", {"x": "$2"}, (1,)), CallDone(1, "b", "f", {"x": "$1"}, (0,)),
               CallDone(2, "c", "f", {"x": "ok"}))
    with pytest.raises(PlanError, match="step 1 \\(f\\) and step 2 depend on each other: a cycle"):
        await runner.wait()
    assert runner.steps[3].result == "ok"                          # the valid step still ran
    assert "not run: step 1 (f) failed" in (runner.steps[2].error or "")
    runner = PlanRunner(tools)
    runner.add(CallDone(0, "a", "f", {"x": "$1"}, (0,)))
    with pytest.raises(PlanError, match="references itself: a cycle"):
        await runner.wait()
    runner = PlanRunner(tools)
    runner.add(CallDone(0, "a", "f", {"x": "$5"}))
    with pytest.raises(PlanError, match=r"\$5, which is not an earlier step"):
        await runner.wait()


def test_plan_streams_through_hermes_and_steps_run_while_decoding(sched: Scheduler) -> None:
    log: list[tuple[str, float, float]] = []
    tools = make_tools(log)
    run_plan = plan_tool(tools, scheduler=sched)
    text = ("I'll make a plan.\n<tool_call>" +
            json.dumps({"name": "run_plan", "arguments": {"plan": PLAN}}) + "</tool_call>")
    replay = Replay(text, tokens_per_s=50, seed=3)
    session = sched.session(tools=[run_plan])
    parser = get_parser("hermes", streams=BoundTools([run_plan]).streams())
    turn = asyncio.run(run_turn(replay, ChatRequest([]), parser=parser, session=session))
    assert [c.name for c in turn.calls] == ["run_plan"] and turn.abort is None
    assert run_plan(PLAN) == EXPECTED                 # claims the early result
    assert len(log) == 6                              # ... which was not run again
    assert sched.pending() == 0
    when = {key: (start, end) for key, start, end in log}
    assert len(when) == 6
    assert session.decode_end is not None
    assert when["France"][0] < session.decode_end    # step 1 started before decoding ended
    deps = {"152 * 2": ["68 + 84"], "68 + 84": ["France", "Germany"],
            "fmt": ["152 * 2", "Italy", "68 + 84"]}
    for key, before in deps.items():
        assert all(when[b][1] <= when[key][0] for b in before), key
    assert when["Germany"][0] < when["France"][1]    # 1 and 2 overlapped
    log.clear()
    assert run_plan_text(tools, PLAN) == EXPECTED    # complete == partial


def _plans() -> st.SearchStrategy[str]:
    def build(spec: list[tuple[int, list[int], bool]]) -> str:
        lines = []
        for n, (value, refs, bad) in enumerate(spec, start=1):
            earlier = sorted({r % (n - 1) + 1 for r in refs}) if n > 1 else []
            args = ", ".join(f'"${r}"' for r in earlier)
            tool = "boom" if bad else "add"
            lines.append(f"{n}. {tool}({value}{', ' if args else ''}{args})\n")
        return "".join(lines) + "join()\n"
    step = st.tuples(st.integers(-5, 5), st.lists(st.integers(0, 10), max_size=3), st.booleans())
    return st.lists(step, min_size=1, max_size=8).map(build)


async def _add(*xs: Any) -> int:
    await asyncio.sleep(0)
    return sum(int(x) for x in xs)


def _boom(*xs: Any) -> int:
    raise RuntimeError(f"boom {xs}")


@settings(max_examples=25, deadline=None)
@given(_plans())
def test_partial_equals_complete_on_generated_plans(plan: str) -> None:
    tools = {"add": _add, "boom": _boom}
    complete = run_plan_text(tools, plan)
    partial, _, _ = asyncio.run(run_partial(tools, plan))
    assert partial == complete
    assert len(complete.splitlines()) == plan.count("(") - 1
