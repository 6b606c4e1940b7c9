"""Scheduler: early start, exactly-once claims, cancellation, expiry, timeouts, aborts."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from conveyor_integrations import (
    AlreadyClaimed,
    EarlyAbort,
    ToolTimeout,
    partial_tool,
)
from conveyor_integrations.events import (
    CallDone,
    CallMalformed,
    CallStarted,
    FieldDone,
    ItemDone,
    StreamDone,
    TextChunk,
)
from conveyor_integrations.scheduler import Scheduler


def wait_for(pred, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def loop_tasks(sched: Scheduler) -> int:
    return sched.submit(_count_tasks()).result()


async def _count_tasks() -> int:
    return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])


def test_start_on_runs_before_call_is_complete(sched: Scheduler) -> None:
    started = threading.Event()

    @partial_tool(start_on=["query"])
    def search(query: str, k: int = 5) -> str:
        started.set()
        return f"{query}:{k}"

    s = sched.session(tools=[search])
    s.handle([CallStarted(0, "c1", "search"), FieldDone(0, ("query",), "paris")])
    assert started.wait(5), "tool did not start on the final field"
    s.handle([CallDone(0, "c1", "search", {"query": "paris"}), StreamDone()])
    assert sched.claim("c1", args={"query": "paris"}) == (True, "paris:5")
    assert s.timings[0].tool_start < s.timings[0].args_final
    assert sched.pending() == 0


def test_second_claim_is_a_clear_error(sched: Scheduler) -> None:
    @partial_tool(start_on=["x"])
    def f(x: int) -> int:
        return x * 2

    s = sched.session(tools=[f])
    s.handle([CallStarted(0, "c1", "f"), FieldDone(0, ("x",), 2), CallDone(0, "c1", "f", {"x": 2})])
    assert sched.claim("c1") == (True, 4)
    with pytest.raises(AlreadyClaimed):
        sched.claim("c1")


def test_unknown_call_runs_normally(sched: Scheduler) -> None:
    assert sched.claim("nope") == (False, None)


def test_different_final_args_rerun_on_the_complete_arguments(sched: Scheduler) -> None:
    calls: list[tuple[str, int]] = []

    @partial_tool(start_on=["query"])
    def search(query: str, k: int = 5) -> str:
        calls.append((query, k))
        return f"{query}:{k}"

    s = sched.session(tools=[search])
    s.handle([CallStarted(0, "c1", "search"), FieldDone(0, ("query",), "a")])
    wait_for(lambda: calls)
    s.handle([FieldDone(0, ("k",), 2), CallDone(0, "c1", "search", {"query": "a", "k": 2})])
    assert sched.claim("c1") == (True, "a:2")
    assert calls == [("a", 5), ("a", 2)]


def test_framework_args_differ_from_decoded_ones(sched: Scheduler) -> None:
    @partial_tool(start_on=["x"])
    def f(x: int) -> int:
        return x

    s = sched.session(tools=[f])
    s.handle([CallStarted(0, "c1", "f"), FieldDone(0, ("x",), 1), CallDone(0, "c1", "f", {"x": 1})])
    assert sched.claim("c1", args={"x": 99}) == (False, None)   # e.g. a human edited the call
    wait_for(lambda: loop_tasks(sched) == 0)


def test_claim_by_name_and_args_gives_each_identical_call_its_own_result(sched: Scheduler) -> None:
    counter = iter(range(100))

    @partial_tool(start_on=["x"])
    def f(x: int) -> int:
        return next(counter)

    s = sched.session(tools=[f])
    for i in (0, 1):
        s.handle([CallStarted(i, f"c{i}", "f"), FieldDone(i, ("x",), 7),
                  CallDone(i, f"c{i}", "f", {"x": 7})])
    got = {sched.claim(name="f", args={"x": 7})[1] for _ in range(2)}
    assert got == {0, 1}
    assert sched.claim(name="f", args={"x": 7}) == (False, None)


def test_malformed_call_cancels_early_execution(sched: Scheduler) -> None:
    cancelled = threading.Event()

    @partial_tool(start_on=["x"])
    async def slow(x: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return x

    s = sched.session(tools=[slow])
    s.handle([CallStarted(0, "c1", "slow"), FieldDone(0, ("x",), 1)])
    wait_for(lambda: s.timings[0].tool_start is not None)
    s.handle([CallMalformed(0, "c1", "slow", "bad json")])
    assert cancelled.wait(5)
    assert sched.claim("c1") == (False, None)       # never delivered
    wait_for(lambda: loop_tasks(sched) == 0)


def test_a_repeated_key_is_malformed_and_cancels_what_started_on_its_first_value(
        sched: Scheduler) -> None:
    from conveyor_integrations.parsing import get_parser

    cancelled, started = threading.Event(), threading.Event()
    seen: list[int] = []

    @partial_tool(start_on=["x"])
    async def slow(x: int) -> int:
        seen.append(x)
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return x

    parser = get_parser("hermes")
    s = sched.session(tools=[slow])
    s.handle(parser.feed('<tool_call>{"name": "slow", "arguments": {"x": 1, '))
    assert started.wait(5) and seen == [1]              # started on the first value
    events = parser.feed('"x": 2}}</tool_call>') + parser.close()
    s.handle(events)
    (bad,) = [e for e in events if isinstance(e, CallMalformed)]
    assert "duplicate key 'x'" in bad.reason
    assert not any(isinstance(e, CallDone) for e in events)
    assert cancelled.wait(5) and seen == [1]            # cancelled, never run on 2
    assert sched.claim(bad.id) == (False, None)
    wait_for(lambda: loop_tasks(sched) == 0)


def test_stream_failure_cancels_every_execution_of_the_request(sched: Scheduler) -> None:
    @partial_tool(start_on=["x"])
    async def slow(x: int) -> int:
        await asyncio.sleep(30)
        return x

    s = sched.session(tools=[slow])
    s.handle([CallStarted(0, "c1", "slow"), FieldDone(0, ("x",), 1),
              CallDone(0, "c1", "slow", {"x": 1})])
    s.handle([CallStarted(1, "c2", "slow"), FieldDone(1, ("x",), 2)])
    s.cancel("backend died")
    wait_for(lambda: loop_tasks(sched) == 0)
    assert sched.pending() == 0


def test_unclaimed_result_expires(sched: Scheduler) -> None:
    sched.claim_timeout = 0.1
    cancelled = threading.Event()

    @partial_tool(start_on=["x"])
    async def slow(x: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return x

    s = sched.session(tools=[slow])
    s.handle([CallStarted(0, "c1", "slow"), FieldDone(0, ("x",), 1),
              CallDone(0, "c1", "slow", {"x": 1})])
    assert cancelled.wait(5)
    wait_for(lambda: sched.pending() == 0 and loop_tasks(sched) == 0)
    assert s.timings[0].status == "dropped"


def test_tool_timeout(sched: Scheduler) -> None:
    @partial_tool(start_on=["x"], timeout=0.1)
    async def hang(x: int) -> int:
        await asyncio.sleep(30)
        return x

    s = sched.session(tools=[hang])
    s.handle([CallStarted(0, "c1", "hang"), FieldDone(0, ("x",), 1),
              CallDone(0, "c1", "hang", {"x": 1})])
    with pytest.raises(ToolTimeout):
        sched.claim("c1")
    wait_for(lambda: loop_tasks(sched) == 0)


def test_tool_error_is_the_claimed_result(sched: Scheduler) -> None:
    @partial_tool(start_on=["x"])
    def boom(x: int) -> int:
        raise ValueError("nope")

    s = sched.session(tools=[boom])
    s.handle([CallStarted(0, "c1", "boom"), FieldDone(0, ("x",), 1),
              CallDone(0, "c1", "boom", {"x": 1})])
    with pytest.raises(ValueError, match="nope"):
        sched.claim("c1")


def test_early_abort_reaches_the_session(sched: Scheduler) -> None:
    class NonNegative:
        async def start(self, call): return None
        async def feed(self, event):
            if isinstance(event, FieldDone) and event.value < 0:
                raise EarlyAbort(f"{event.path[-1]} must be >= 0")
        async def finish(self, args): return "ok"
        async def cancel(self): return None

    @partial_tool(execution=NonNegative)
    def record(a: int, b: int) -> str:
        return "ok"

    s = sched.session(tools=[record])
    s.handle([CallStarted(0, "c1", "record"), FieldDone(0, ("a",), -3)])
    wait_for(lambda: s.aborted)
    assert "a must be >= 0" in str(s.abort)
    s.handle([CallMalformed(0, "c1", "record", "unterminated")])   # the stream was cut
    with pytest.raises(EarlyAbort):
        sched.claim("c1")


def test_side_effect_tool_never_runs_on_a_prefix(sched: Scheduler) -> None:
    ran: list[dict] = []

    @partial_tool(side_effects=True)
    def write(path: str, text: str) -> str:
        ran.append({"path": path, "text": text})
        return "written"

    events = [CallStarted(0, "c1", "write"), FieldDone(0, ("path",), "/x"),
              FieldDone(0, ("text",), "hi")]
    done = CallDone(0, "c1", "write", {"path": "/x", "text": "hi"})
    s = sched.session(tools=[write])    # default: only when the framework invokes it
    s.handle(events + [done])
    time.sleep(0.1)
    assert ran == [] and sched.claim("c1") == (False, None)
    assert write(path="/x", text="hi") == "written" and len(ran) == 1

    s = sched.session(tools=[write], run_side_effects=True)  # opt-in: the complete call only
    s.handle([CallStarted(0, "c2", "write"), *events[1:]])
    time.sleep(0.1)
    assert len(ran) == 1
    s.handle([CallDone(0, "c2", "write", {"path": "/x", "text": "hi"})])
    assert sched.claim("c2") == (True, "written")
    assert len(ran) == 2


def test_approval_required_tool_never_runs_early(sched: Scheduler) -> None:
    ran: list[int] = []

    @partial_tool(side_effects=True)
    def pay(amount: int) -> str:
        ran.append(amount)
        return "paid"

    s = sched.session(tools=[pay], approval_required={"pay"}, run_side_effects=True)
    s.handle([CallStarted(0, "c1", "pay"), FieldDone(0, ("amount",), 5),
              CallDone(0, "c1", "pay", {"amount": 5})])
    time.sleep(0.1)
    assert ran == [] and sched.claim("c1") == (False, None)


def test_stream_pieces_run_in_order(sched: Scheduler) -> None:
    seen: list[str] = []

    @partial_tool(stream="text", unit="line", combine="".join)
    async def echo(text: str) -> str:
        await asyncio.sleep(0.01 if text.startswith("a") else 0)
        seen.append(text)
        return text.upper()

    s = sched.session(tools=[echo])
    s.handle([CallStarted(0, "c1", "echo"), TextChunk(0, ("text",), "a\n"),
              TextChunk(0, ("text",), "b\n"), FieldDone(0, ("text",), "a\nb\n"),
              CallDone(0, "c1", "echo", {"text": "a\nb\n"})])
    assert sched.claim("c1") == (True, "A\nB\n")
    assert seen == ["a\n", "b\n"]


def test_items_run_concurrently(sched: Scheduler) -> None:
    active, most = 0, 0

    @partial_tool(items="queries", combine="\n".join)
    async def search(queries: list[str]) -> str:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.05)
        active -= 1
        return ",".join(queries)

    s = sched.session(tools=[search])
    s.handle([CallStarted(0, "c1", "search")] +
             [ItemDone(0, ("queries",), i, f"q{i}") for i in range(5)] +
             [CallDone(0, "c1", "search", {"queries": [f"q{i}" for i in range(5)]})])
    assert sched.claim("c1") == (True, "q0\nq1\nq2\nq3\nq4")
    assert most == 5                     # every item's search was in flight at once


async def test_async_claim_from_another_loop(sched: Scheduler) -> None:
    @partial_tool(start_on=["x"])
    async def f(x: int) -> int:
        return x + 1

    s = sched.session(tools=[f], loop=sched.loop)   # runs on the scheduler's loop, not this one
    s.handle([CallStarted(0, "c1", "f"), FieldDone(0, ("x",), 1), CallDone(0, "c1", "f", {"x": 1})])
    assert await sched.aclaim("c1") == (True, 2)
    assert await f(5) == 6        # the decorated function still works when called directly


async def test_async_claim_of_an_error_leaves_no_unretrieved_future(sched: Scheduler) -> None:
    import gc

    @partial_tool(start_on=["x"])
    async def boom(x: int) -> int:
        raise ValueError(f"bad {x}")

    reported: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    async def claim() -> None:
        s = sched.session(tools=[boom])
        s.handle([CallStarted(0, "c1", "boom"), FieldDone(0, ("x",), 1),
                  CallDone(0, "c1", "boom", {"x": 1})])
        with pytest.raises(ValueError, match="bad 1"):
            await sched.aclaim("c1")

    await claim()
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert not [c for c in reported if "never retrieved" in str(c.get("message"))]


def test_decorated_function_claims_by_arguments(sched: Scheduler) -> None:
    calls: list[int] = []

    @partial_tool(start_on=["x"])
    def f(x: int) -> int:
        calls.append(x)
        return x * 10

    s = sched.session(tools=[f])
    s.handle([CallStarted(0, "c1", "f"), FieldDone(0, ("x",), 3), CallDone(0, "c1", "f", {"x": 3})])
    assert f(3) == 30 and f(3) == 30
    assert calls == [3, 3]    # once early (claimed by the first call), once normally


def test_function_taking_keyword_fields_claims_its_early_run(sched: Scheduler) -> None:
    """``def f(**fields)``: the claim compares the call's own keywords, so the body runs once."""
    calls: list[dict[str, Any]] = []

    @partial_tool(start_on=["city"])
    def f(**fields: Any) -> str:
        calls.append(fields)
        return f"weather in {fields['city']}"

    s = sched.session(tools=[f])
    s.handle([CallStarted(0, "c1", "f"), FieldDone(0, ("city",), "Lyon"),
              CallDone(0, "c1", "f", {"city": "Lyon"})])
    assert f(city="Lyon") == "weather in Lyon"
    assert calls == [{"city": "Lyon"}]       # the early run only: the call claimed it


def test_a_call_noted_as_aborted_never_runs_its_body_once_its_result_is_gone(
        sched: Scheduler) -> None:
    """An aborted call's early result expired or was dropped: a framework invoking the tool
    with those partial arguments gets an error, never a run on the truncated call."""
    from conveyor_integrations.store import ABORTED_AND_GONE

    calls: list[str] = []

    @partial_tool(start_on=["city"], scheduler=sched)
    def weather(city: str, unit: str = "C") -> str:
        calls.append(city)
        return f"sunny in {city}"

    sched.store.note_aborted("weather", {"city": "Ly", "unit": "C"}, "c-gone")
    assert weather(city="Ly") == ABORTED_AND_GONE      # the defaults filled, as noted
    assert calls == []
    assert weather(city="Ly") == "sunny in Ly"          # noted once: a later call runs
    assert calls == ["Ly"]


def test_an_aborted_call_claimed_by_its_id_is_forgotten_by_its_arguments(
        sched: Scheduler) -> None:
    """Once an aborted call is claimed by its call id (the LangChain tool's path), a later call
    with the same partial arguments is a new call: it runs."""
    store = sched.store
    store.note_aborted("weather", {"city": "Ly"}, "c-1")
    with store._lock:
        store._unnote("c-1")                      # what take("c-1") does
    assert store.aborted_call("weather", {"city": "Ly"}) is None
    store.note_aborted("weather", {"city": "Ly"}, "c-2")
    assert store.aborted_call("weather", {"city": "Ly"}) == "c-2"
    assert store.aborted_call("weather", {"city": "Ly"}) is None    # taken once
