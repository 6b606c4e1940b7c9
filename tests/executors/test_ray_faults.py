"""What goes wrong on a Ray cluster becomes a clear error, and leaves nothing behind.

Each test drives a request's session with the parser's events directly, so it can act between
two pieces: kill the actor in the middle of a program, cancel the request while a task runs,
fill the executor's slots. What they check is the effect: the processes are gone, the CPUs are
free again, a step that needs approval never ran, a body ran once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

ray = pytest.importorskip("ray")

from conveyor_integrations import RemoteToolError, Scheduler, partial_tool
from conveyor_integrations.events import CallDone, CallStarted, FieldDone, TextChunk
from conveyor_integrations.executors import ClusterBusy, RayExecutor
from conveyor_integrations.store import ResultStore
from conveyor_integrations.tools.plan import PlanExecution, run_plan_text
from conveyor_integrations.tools.python import partial_python, run_python_code

from .conftest import CPUS
from .ray_tools import LIMITS, log_run, read_log


def eventually(check: Any, what: str, timeout: float = 60.0) -> Any:
    """Poll ``check()`` until it is truthy (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


async def aeventually(check: Any, what: str, timeout: float = 60.0) -> Any:
    return await asyncio.to_thread(eventually, check, what, timeout)


def call_actors() -> list[psutil.Process]:
    """The processes that hold a call now (Ray titles them ``ray::CallActor...``)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any("CallActor" in part for part in (p.info["cmdline"] or [])):
                out.append(p)
        except psutil.Error:
            continue
    return out


def gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)


def free_cpus() -> bool:
    return float(ray.available_resources().get("CPU", 0.0)) == float(CPUS)


def python(executor: RayExecutor, **kw: Any) -> Any:
    def run_python(code: str) -> str:
        return run_python_code(code, limits=LIMITS)

    return partial_python(run_python, limits=LIMITS, executor=executor, **kw)


def start_python(sched: Scheduler, tool: Any, statements: list[str], cid: str = "c1") -> Any:
    s = sched.session(tools=[tool])
    s.handle([CallStarted(0, cid, "run_python"),
              *(TextChunk(0, ("code",), st) for st in statements)])
    return s


async def test_killing_the_actor_mid_program_is_a_clear_error_and_leaves_no_process(
        sched: Scheduler, ray_executor: RayExecutor) -> None:
    tool = python(ray_executor)
    stmts = ["import time\n", "print('began', flush=True)\n", "time.sleep(600)\n"]
    s = start_python(sched, tool, stmts)
    actor = (await aeventually(lambda: [p for p in call_actors() if p.children(recursive=True)],
                               "the actor started its sandbox"))[0]
    sandbox = [p.pid for p in actor.children(recursive=True)]
    os.kill(actor.pid, signal.SIGKILL)                 # the actor (or its node) dies mid-program
    s.handle([CallDone(0, "c1", "run_python", {"code": "".join(stmts)})])
    s.finish()
    with pytest.raises(RemoteToolError, match=r"run_python.*not run again"):
        await sched.aclaim("c1", spec=tool.conveyor_spec)
    await aeventually(lambda: gone([actor.pid, *sandbox]), "the actor and its sandbox ended")
    await aeventually(lambda: not call_actors(), "no call actor is left")
    await aeventually(free_cpus, "the actor's CPU is free again")
    assert sched.pending() == 0


async def test_early_abort_in_the_actor_stops_decoding_and_ends_the_actor(
        sched: Scheduler, ray_executor: RayExecutor) -> None:
    tool = python(ray_executor, abort_on_error=True)
    s = start_python(sched, tool, ["x = 1 / 0\n"])
    await aeventually(lambda: call_actors(), "the actor started")
    for i in range(200):                      # the model keeps writing; one statement is fed
        if s.abort is not None:               # at a time until the actor's abort comes back
            break
        s.handle([TextChunk(0, ("code",), f"y{i} = {i}\n")])
        await asyncio.sleep(0.05)
    assert s.abort is not None and "ZeroDivisionError" in s.abort.reason
    s.cancel("decoding stopped")
    await aeventually(lambda: not call_actors(), "the aborted call's actor ended")
    await aeventually(free_cpus, "its CPU is free again")


async def test_cancelled_request_kills_the_running_task_and_frees_its_cpu(
        sched: Scheduler, ray_executor: RayExecutor, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"

    @partial_tool(start_on=["q"], executor=ray_executor)
    def slow(q: str) -> str:
        log_run(log, "began")
        time.sleep(600)
        log_run(log, "ended")
        return q

    s = sched.session(tools=[slow])
    s.handle([CallStarted(0, "c1", "slow"), FieldDone(0, ("q",), "x")])
    (_, pid, _), = await aeventually(lambda: read_log(log), "the task began")
    s.cancel()
    await aeventually(lambda: gone([pid]), "the task's worker was killed")
    await aeventually(free_cpus, "its CPU is free again")
    assert [label for label, _, _ in read_log(log)] == ["began"]
    assert sched.pending() == 0


async def test_a_plan_step_that_needs_approval_never_runs_in_the_actor(
        sched: Scheduler, ray_executor: RayExecutor, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"

    def lookup(query: str) -> float:
        log_run(log, f"lookup {query}")
        return 2.0

    def pay(amount: str) -> str:
        log_run(log, f"pay {amount}")
        return "paid"

    steps = {"lookup": lookup, "pay": pay}

    def run_plan(plan: str) -> str:
        return run_plan_text(steps, plan)

    tool = partial_tool(run_plan, stream="plan", unit="line", executor=ray_executor,
                        execution=lambda: PlanExecution(steps))
    plan = '1. lookup("price")\n2. pay("$1")\njoin()\n'
    s = sched.session(tools=[tool], approval_required={"pay"})
    s.handle([CallStarted(0, "c1", "run_plan"),
              *(TextChunk(0, ("plan",), line) for line in plan.splitlines(keepends=True)),
              CallDone(0, "c1", "run_plan", {"plan": plan})])
    s.finish()
    found, _ = await sched.aclaim("c1", spec=tool.conveyor_spec)
    assert found is False                      # the framework runs it, after the approval
    assert [label for label, _, _ in read_log(log)] in ([], ["lookup price"])
    assert not any(label.startswith("pay") for label, _, _ in read_log(log))


async def test_calls_wait_for_a_slot_and_each_runs_once(
        ray_address: str, ray_executor: RayExecutor, tmp_path: Path) -> None:
    executor = RayExecutor(ray_address, max_in_flight=2)
    log = tmp_path / "runs.log"

    @partial_tool(start_on=["i"], executor=executor)
    def work(i: int) -> int:
        log_run(log, f"begin {i}")
        time.sleep(0.3)
        log_run(log, f"end {i}")
        return i * i

    sched = Scheduler(store=ResultStore())
    try:
        s = sched.session(tools=[work])
        for i in range(8):
            s.handle([CallStarted(i, f"c{i}", "work"), FieldDone(i, ("i",), i),
                      CallDone(i, f"c{i}", "work", {"i": i})])
        s.finish()
        results = [await sched.aclaim(f"c{i}", spec=work.conveyor_spec) for i in range(8)]
    finally:
        sched.close()
    assert results == [(True, i * i) for i in range(8)]
    rows = sorted(read_log(log), key=lambda r: r[2])
    assert sorted(label for label, _, _ in rows) == sorted(
        [f"begin {i}" for i in range(8)] + [f"end {i}" for i in range(8)])   # each once
    running = peak = 0
    for label, _, _ in rows:
        running += 1 if label.startswith("begin") else -1
        peak = max(peak, running)
    assert peak <= 2


async def test_a_full_executor_is_a_clear_error_after_its_queue_timeout(
        ray_address: str, ray_executor: RayExecutor) -> None:
    executor = RayExecutor(ray_address, max_in_flight=1, queue_timeout=0.5)

    @partial_tool(start_on=["q"], executor=executor)
    def hold(q: str) -> str:
        time.sleep(3)
        return q

    sched = Scheduler(store=ResultStore())
    try:
        s = sched.session(tools=[hold])
        for i in range(2):
            s.handle([CallStarted(i, f"c{i}", "hold"), FieldDone(i, ("q",), str(i)),
                      CallDone(i, f"c{i}", "hold", {"q": str(i)})])
        s.finish()
        first = await sched.aclaim("c0", spec=hold.conveyor_spec)
        with pytest.raises(ClusterBusy, match=r"hold.*1 remote calls"):
            await sched.aclaim("c1", spec=hold.conveyor_spec)
    finally:
        sched.close()
    assert first == (True, "0")


async def test_a_need_no_node_can_hold_is_a_clear_error(
        sched: Scheduler, ray_executor: RayExecutor) -> None:
    @partial_tool(start_on=["q"], executor=ray_executor.options(num_cpus=64))
    def huge(q: str) -> str:
        return q

    s = sched.session(tools=[huge])
    s.handle([CallStarted(0, "c1", "huge"), FieldDone(0, ("q",), "x"),
              CallDone(0, "c1", "huge", {"q": "x"})])
    s.finish()
    with pytest.raises(ValueError, match=r"huge.*'CPU': 64.*no node"):
        await sched.aclaim("c1", spec=huge.conveyor_spec)


def test_a_body_ray_cannot_ship_is_refused_at_decoration(ray_executor: RayExecutor) -> None:
    lock = threading.Lock()

    def guarded(q: str) -> str:
        with lock:
            return q

    with pytest.raises(TypeError, match=r"'guarded' cannot run on Ray.*pickled"):
        partial_tool(guarded, start_on=["q"], executor=ray_executor)


async def test_the_tools_own_error_comes_back_as_itself(
        sched: Scheduler, ray_executor: RayExecutor) -> None:
    @partial_tool(start_on=["q"], executor=ray_executor)
    def picky(q: str) -> str:
        raise ValueError(f"no results for {q!r}")

    s = sched.session(tools=[picky])
    s.handle([CallStarted(0, "c1", "picky"), FieldDone(0, ("q",), "x"),
              CallDone(0, "c1", "picky", {"q": "x"})])
    s.finish()
    with pytest.raises(ValueError, match="no results for 'x'"):
        await sched.aclaim("c1", spec=picky.conveyor_spec)


async def test_a_scheduler_wide_executor_takes_sync_tools_and_leaves_async_ones_here(
        ray_executor: RayExecutor, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"

    @partial_tool(start_on=["q"])
    def sync_tool(q: str) -> str:
        log_run(log, "sync")
        return q

    @partial_tool(start_on=["q"])
    async def async_tool(q: str) -> str:
        log_run(log, "async")
        return q

    sched = Scheduler(store=ResultStore(), executor=ray_executor)
    try:
        s = sched.session(tools=[sync_tool, async_tool])
        for i, name in enumerate(["sync_tool", "async_tool"]):
            s.handle([CallStarted(i, f"c{i}", name), FieldDone(i, ("q",), name),
                      CallDone(i, f"c{i}", name, {"q": name})])
        s.finish()
        assert await sched.aclaim("c0", spec=sync_tool.conveyor_spec) == (True, "sync_tool")
        assert await sched.aclaim("c1", spec=async_tool.conveyor_spec) == (True, "async_tool")
    finally:
        sched.close()
    where = {label: pid for label, pid, _ in read_log(log)}
    assert where["sync"] != os.getpid() and where["async"] == os.getpid()


def test_a_call_the_framework_runs_itself_runs_on_ray_too(
        sched: Scheduler, ray_executor: RayExecutor, tmp_path: Path) -> None:
    from langchain_core.tools import tool

    log = tmp_path / "runs.log"

    @partial_tool(start_on=["q"], executor=ray_executor)
    def plain(q: str) -> str:
        log_run(log, f"plain {q}")
        return q.upper()

    @tool
    def lc(q: str) -> str:
        """Shout."""
        log_run(log, f"lc {q}")
        return q.upper()

    lc_fast = partial_tool(lc, start_on=["q"], executor=ray_executor)
    assert plain("a") == "A"                       # nothing started early: still on Ray
    assert lc_fast.invoke({"q": "b"}) == "B"
    assert sorted(label for label, _, _ in read_log(log)) == ["lc b", "plain a"]
    assert all(pid != os.getpid() for _, pid, _ in read_log(log))
