"""Reliability scenarios: seeded faults through ChatConveyor (invoke, ainvoke) and ``run_turn``.

Shared by ``test_faults.py`` (small counts) and ``scripts/reliability_faults.py`` (large counts).
Every run checks: the typed error that is due, every delivered result against its own call, the
registry drained, no task left on the scheduler loop or the caller's, no thread beyond the pool,
no child process. Counts go to ``TALLY``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psutil
from langchain_core.tools import BaseTool, tool

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import BackendError, ChatRequest
from conveyor_integrations.backends.faults import (
    FaultyReplay,
    ToolFault,
    hanging_tool,
    raising_tool,
    slow_cancel_tool,
)
from conveyor_integrations.errors import ToolTimeout
from conveyor_integrations.events import CallStarted, FieldDone, ItemDone, TextChunk
from conveyor_integrations.parsing import get_parser
from conveyor_integrations.policy import BoundTools
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.turn import run_turn

TALLY: Counter[str] = Counter()
"""Everything counted by every scenario run in this process."""
BAD = ("lost_results", "duplicated_executions", "leaked_registry", "leaked_tasks",
       "leaked_threads", "leaked_processes", "escaped_exceptions", "missing_errors")
KINDS = ("fail", "stall", "garbage", "tool_raise", "tool_hang", "slow_cancel", "caller_cancel")
PATHS = ("invoke", "ainvoke", "core")
BODIES: Counter[str] = Counter()   # tool bodies that ran to completion, by what they ran on
_ERRORS: list[str] = []


def transcript(run: str) -> str:
    """A message with three calls: lookup (start_on), fetch_all (items), check (custom)."""
    lookup = {"name": "lookup", "arguments": {"key": run, "note": "n" * 40}}
    fetch = {"name": "fetch_all", "arguments": {"urls": [f"{run}a", f"{run}b", f"{run}c"]}}
    chk = {"name": "check", "arguments": {"key": run, "note": "x"}}
    return "Working." + "".join(f"<tool_call>{json.dumps(c)}</tool_call>"
                                for c in (lookup, fetch, chk))


def lookup_ok(key: str, note: str = "") -> str:
    """Look a key up."""
    BODIES[f"lookup:{key}"] += 1
    return f"{key}|{len(note)}"


async def fetch_all(urls: list[str]) -> str:
    """Fetch every url."""
    await asyncio.sleep(0)
    for u in urls:
        BODIES[f"fetch:{u}"] += 1
    return "\n".join(f"got:{u}" for u in urls)


def check(key: str, note: str = "") -> str:
    """Check a key (run by its custom execution)."""
    return f"checked:{key}:{note}"


class CheckExec:
    """A custom PartialExecution: counts pieces, computes the result in finish()."""

    def __init__(self) -> None:
        self.pieces = 0

    async def start(self, call: CallStarted) -> None:
        return None

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        self.pieces += 1

    async def finish(self, args: dict[str, Any]) -> Any:
        BODIES[f"check:{args.get('key')}"] += 1
        return check(**args)

    async def cancel(self) -> None:
        return None


EXPECTED: dict[str, Callable[..., Any]] = {
    "lookup": lambda key, note="": f"{key}|{len(note)}", "check": check,
    "fetch_all": lambda urls: "\n".join(f"got:{u}" for u in urls)}


def make_tools(kind: str, cancels: Counter[str]) -> dict[str, BaseTool]:
    timeout = None
    fn: Callable[..., Any] = lookup_ok
    if kind == "tool_raise":
        fn = raising_tool()
    elif kind == "tool_hang":
        fn, timeout = hanging_tool(30.0), 0.02
    elif kind == "slow_cancel":
        fn, timeout = slow_cancel_tool(0.02, on_cancel=lambda: cancels.update(["handler"])), 0.02
    return {"lookup": partial_tool(tool("lookup")(fn), start_on=["key", "note"],
                                     timeout=timeout),
            "fetch_all": partial_tool(tool(fetch_all), items="urls", combine="\n".join),
            "check": partial_tool(tool(check), execution=CheckExec)}


def due_error(kind: str, name: str) -> type[BaseException] | None:
    if name == "lookup":
        return {"tool_raise": ToolFault, "tool_hang": ToolTimeout,
                "slow_cancel": ToolTimeout}.get(kind)
    return None


# -- leak checks --------------------------------------------------------------------------------
async def _other_tasks() -> int:
    return len(asyncio.all_tasks()) - 1


def _settle(probe: Callable[[], int], wait_s: float = 2.0) -> int:
    """Poll ``probe`` until it reads 0 (drops are processed asynchronously); its last value.

    Shorter than the fixture's ``claim_timeout`` (5 s), so expiry cannot hide a leak."""
    deadline = time.monotonic() + wait_s
    while (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.005)
    return value


async def _settle_here(wait_s: float = 2.0) -> int:
    """Like :func:`_settle`, for the tasks left on the running loop (besides the caller): the
    early runs of ``ainvoke`` and ``run_turn`` live on the caller's loop."""
    me = asyncio.current_task()
    deadline = time.monotonic() + wait_s
    while (left := sum(1 for t in asyncio.all_tasks() if t is not me)) \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return left


def leak_check(sched: Scheduler, children0: set[int], c: Counter[str]) -> None:
    """After one run: registry, scheduler-loop tasks, threads and child processes."""
    c["leaked_registry"] += _settle(sched.pending)
    c["leaked_tasks"] += _settle(lambda: sched.submit(_other_tasks()).result(5))
    names = [t.name for t in threading.enumerate() if t.name.startswith("conveyor")]
    pool = [n for n in names if n.startswith("conveyor-tool")]
    other = [n for n in names if n != "conveyor-scheduler" and n not in pool]
    c["leaked_threads"] += len(other) + max(0, len(pool) - sched._max_threads)
    kids = {p.pid for p in psutil.Process().children(recursive=True)} - children0
    c["leaked_processes"] += len(kids)


# -- one run ------------------------------------------------------------------------------------
async def _drive(path: str, kind: str, model: Any, backend: FaultyReplay, sched: Scheduler,
                 tools: dict[str, BaseTool], rng: random.Random) -> list[dict[str, Any]]:
    """Run the model turn the way ``path`` says; the complete tool calls it produced."""
    if path == "invoke":
        if kind == "caller_cancel":   # a sync caller cancels by leaving the stream
            stop_at = rng.randint(0, 4)   # while it still decodes (see test_left_after_decode)

            def consume() -> bool:
                it = model.stream("go")
                try:
                    for i, _ in enumerate(it):
                        if i >= stop_at:
                            return True
                    return False
                finally:
                    it.close()   # what `break` does by refcount; an exception would defer it
            if await asyncio.to_thread(consume):
                raise _CallerLeft
            return []
        msg = await asyncio.to_thread(model.invoke, "go")
        return list(msg.tool_calls)
    if path == "ainvoke":
        coro: Any = model.ainvoke("go")
    else:
        bound = BoundTools(tools.values())
        session = sched.session(tools=bound)
        parser = get_parser("hermes", tools=list(tools), streams=bound.streams())
        coro = run_turn(backend, ChatRequest([]), parser=parser, session=session)
    task = asyncio.ensure_future(coro)
    if kind == "caller_cancel":
        target = rng.randint(0, 60)
        while not task.done() and sum(backend.emitted) < target:
            await asyncio.sleep(0.0005)
        if task.cancel():
            await task   # raises CancelledError: that is what is due
    out = await task
    if path == "ainvoke":
        return list(out.tool_calls)
    return [{"name": c.name, "args": c.args, "id": c.id} for c in out.calls]


class _CallerLeft(Exception):
    pass


def _fits(name: str, args: dict[str, Any]) -> bool:
    try:
        inspect.signature(EXPECTED[name]).bind(**args)
    except TypeError:
        return False
    return True


async def _claim(path: str, sched: Scheduler, t: BaseTool, call: dict[str, Any]) -> Any:
    if path == "core":
        found, value = await sched.aclaim(call["id"], args=call["args"],
                                          spec=t.conveyor_spec)
        return value if found else await t.ainvoke(call["args"])
    tc = {"type": "tool_call", **call}
    msg = await (asyncio.to_thread(t.invoke, tc) if path == "invoke" else t.ainvoke(tc))
    return msg.content


async def one_run(sched: Scheduler, kind: str, path: str, seed: int, c: Counter[str]) -> None:
    rng = random.Random(seed)
    tools = make_tools(kind, c)
    backend = FaultyReplay(transcript(f"s{seed}{path[0]}"), tokens_per_s={"caller_cancel": 500 if path == "invoke" else 5000, "stall": 5000}.get(kind), seed=seed, fail_at=kind == "fail",
        stall_s=0.01 if kind == "stall" else 0.0, garbage=3 if kind == "garbage" else 0)
    model = ChatConveyor(backend=backend, scheduler=sched).bind_tools(list(tools.values()))
    c["requests"] += 1
    if kind in ("tool_raise", "tool_hang", "slow_cancel", "caller_cancel"):
        c[f"fault:{kind}"] += 1
    try:
        calls = await _drive(path, kind, model, backend, sched, tools, rng)
    except BackendError:
        c["errors:BackendError"] += 1
        c["missing_errors"] += kind != "fail"
        calls = []
    except (asyncio.CancelledError, _CallerLeft):
        c["errors:cancelled"] += 1
        calls = []
    else:
        c["missing_errors"] += kind == "fail"
    for k, v in backend.injected.items():
        c[f"fault:{k}"] += v
    for call in calls:
        t = tools.get(call["name"])
        if t is None:
            continue
        due = due_error(kind, call["name"])
        if not _fits(call["name"], call["args"]):   # garbage renamed a key: any outcome will do
            c["garbage_args_mismatch"] += 1
            await asyncio.gather(_claim(path, sched, t, call), return_exceptions=True)
            continue
        try:
            value = await _claim(path, sched, t, call)
        except Exception as exc:  # noqa: BLE001 - the due error, or a lost result
            if due is not None and isinstance(exc, due):
                c[f"errors:{due.__name__}"] += 1
            elif kind == "garbage" and type(exc).__name__ == "ValidationError":
                c["garbage_rejected_by_schema"] += 1
            else:
                c["lost_results"] += 1
                _ERRORS.append(f"{kind}/{path}/{seed}: {call['name']}: {exc!r}")
            continue
        c["executions_checked"] += 1
        if due is not None:
            c["missing_errors"] += 1
        elif str(value) != str(EXPECTED[call["name"]](**call["args"])):
            c["lost_results"] += 1
            _ERRORS.append(f"{kind}/{path}/{seed}: {call['name']} -> {value!r}")
    if kind != "garbage":   # garbage may change arguments: a rerun on them is by design
        c["duplicated_executions"] += sum(max(0, n - 1) for n in BODIES.values())
    BODIES.clear()


def run_scenario(sched: Scheduler, kind: str, path: str, runs: int, seed: int = 0
                 ) -> Counter[str]:
    """``runs`` seeded runs of one fault kind through one path; the counts."""
    c: Counter[str] = Counter()
    children0 = {p.pid for p in psutil.Process().children(recursive=True)}

    async def main() -> None:
        for i in range(runs):
            try:
                await one_run(sched, kind, path, seed * 100003 + i, c)
            except Exception as exc:  # noqa: BLE001 - counted, and shown by assert_clean
                c["escaped_exceptions"] += 1
                _ERRORS.append(f"{kind}/{path}/{seed * 100003 + i}: escaped {exc!r}")
            await asyncio.to_thread(leak_check, sched, children0, c)
            c["leaked_tasks"] += await _settle_here()

    asyncio.run(main())
    TALLY.update(c)
    return c


def assert_clean(c: Counter[str]) -> None:
    bad = {k: c[k] for k in BAD if c[k]}
    assert not bad, f"{bad}; first errors: {_ERRORS[:5]}"
