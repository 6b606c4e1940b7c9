"""Seeded faults through ChatConveyor (invoke, ainvoke) and the core ``run_turn``; the loop shut
down with work in flight; schema failures through ``create_agent``. Machinery: ``__init__.py``."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("langchain_core")
from langchain_core.tools import tool

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends.faults import FaultyReplay
from conveyor_integrations.scheduler import Scheduler

from . import (
    KINDS,
    PATHS,
    TALLY,
    _other_tasks,
    _settle,
    assert_clean,
    make_tools,
    run_scenario,
    transcript,
)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", KINDS)
def test_fault(sched: Scheduler, kind: str, path: str) -> None:
    c = run_scenario(sched, kind, path, runs=6, seed=KINDS.index(kind))
    assert_clean(c)
    assert c["requests"] == 6
    if kind == "fail":
        assert c["errors:BackendError"] == 6
    elif kind in ("tool_raise", "tool_hang", "slow_cancel"):
        assert c["errors:ToolFault"] + c["errors:ToolTimeout"] == 6
    elif kind != "caller_cancel":
        assert c["executions_checked"] >= (6 if kind == "garbage" else 18)
    if kind == "slow_cancel":
        assert c["handler"] == 6   # every cancellation handler ran to its end


# -- the caller's event loop shut down with work in flight ---------------------------------------
def _start_in_flight(sched: Scheduler, n: int, rates: list[int]) -> Callable[[], Any]:
    tools = list(make_tools("none", Counter()).values())

    async def main() -> None:   # returns while its ainvoke tasks are still decoding
        for i in range(n):
            b = FaultyReplay(transcript(f"loop{i}"), tokens_per_s=rates[i % len(rates)], seed=i)
            model = ChatConveyor(backend=b, scheduler=sched).bind_tools(tools)
            asyncio.ensure_future(model.ainvoke("go"))
        await asyncio.sleep(0.03)
    return main


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # closed loop's
@pytest.mark.parametrize("how", ["asyncio.run", "loop.close"])
def test_loop_shut_down_with_work_in_flight(how: str) -> None:
    """``asyncio.run`` cancels what is left; a bare ``loop.close()`` abandons it. Either way the
    registry drains (dropped, or expired after ``claim_timeout``) and close() leaves no thread."""
    sched = Scheduler(claim_timeout=0.5)
    before = {t.ident for t in threading.enumerate()}
    main = _start_in_flight(sched, 8, [300, 3000, 100000])
    if how == "asyncio.run":
        asyncio.run(main())
    else:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
        gc.collect()   # its abandoned coroutines warn here, where the warning is filtered
    TALLY["fault:loop_shutdown"] += 1
    TALLY["requests"] += 8
    c: Counter[str] = Counter()
    c["leaked_registry"] += _settle(sched.pending, wait_s=10.0)
    c["leaked_tasks"] += _settle(lambda: sched.submit(_other_tasks()).result(5), wait_s=10.0)
    sched.close()
    left = [t for t in threading.enumerate() if t.ident not in before
            and t.name.startswith("conveyor")]
    for t in left:
        t.join(timeout=5)
    c["leaked_threads"] += sum(t.is_alive() for t in left)
    TALLY.update(c)
    assert_clean(c)


# -- tool arguments that fail the tool's schema ---------------------------------------------------
def _schema_agent_run(sched: Scheduler) -> list[Any]:
    pytest.importorskip("langchain.agents")
    from langchain.agents import create_agent

    @tool
    def square(n: int) -> int:
        """Square n."""
        return n * n

    turns = ['<tool_call>{"name": "square", "arguments": {"n": "not a number"}}</tool_call>',
             "I could not square that."]
    model = ChatConveyor(backend=FaultyReplay(turns, seed=1), scheduler=sched)
    agent = create_agent(model, [partial_tool(square, start_on=["n"])])
    TALLY["fault:schema_mismatch"] += 1
    TALLY["requests"] += 1
    return list(agent.invoke({"messages": [("user", "square it")]})["messages"])


def test_schema_failure_reaches_the_model_as_an_error(sched: Scheduler) -> None:
    from langchain_core.messages import ToolMessage

    out = _schema_agent_run(sched)
    msgs = [m for m in out if isinstance(m, ToolMessage)]
    assert len(msgs) == 1 and msgs[0].status == "error"
    assert "n" in str(msgs[0].content) and "int" in str(msgs[0].content).lower()
    assert out[-1].content == "I could not square that."


def test_schema_failure_releases_the_early_execution(sched: Scheduler) -> None:
    """Regression: the failed call was never claimed, so it stayed registered until
    ``claim_timeout`` (fixed by the release in ``done`` of adapters/langchain/tools.py)."""
    _schema_agent_run(sched)
    assert _settle(sched.pending) == 0


def test_left_after_decode_releases_the_executions(sched: Scheduler) -> None:
    """Regression: a caller that left the stream after decoding ended, before the last chunk,
    left its executions registered until ``claim_timeout`` (fixed by ``ModelTurn.abandon`` in
    adapters/common.py)."""
    tools = list(make_tools("none", Counter()).values())
    backend = FaultyReplay(transcript("after"), seed=2)
    it = ChatConveyor(backend=backend, scheduler=sched).bind_tools(tools).stream("go")
    next(it)
    _settle(lambda: sched.submit(_other_tasks()).result(5))   # producer and executions done
    assert sched.pending() == 3   # all three calls decoded, their results unclaimed
    it.close()
    assert _settle(sched.pending) == 0
