"""Safety rules under stress: many requests at once, seeded random token cuts and choices.

1. ``side_effects=True`` tools never start on a prefix: with ``run_side_effects`` (core), each
   starts only after its call's ``CallDone`` (``args_final``), on the complete arguments, once;
   a call cut off mid-arguments never starts. Through ``ChatConveyor`` (no ``run_side_effects``)
   they start only when the framework invokes them, after the message's stream ended.
2. Tools listed in ``approval_required`` never start before approval (LangChain
   ``HumanInTheLoopMiddleware`` + ``InMemorySaver``, one thread per run, all interrupted at once),
   even though they are decorated to start early.
3. A denied approval cancels nothing else: the other (early-started) tool of the same message
   still delivers its own result, exactly once.

Orderings are compared (``perf_counter`` stamps), never durations. ``CONVEYOR_STRESS_SEED`` adds
one more seed to the parametrised ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import ChatRequest, Replay
from conveyor_integrations.backends.base import Delta
from conveyor_integrations.parsing import get_parser
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.turn import run_turn

SEEDS = [11, 12, 13] + ([int(os.environ["CONVEYOR_STRESS_SEED"])]
                        if os.environ.get("CONVEYOR_STRESS_SEED") else [])


class Starts:
    """Thread-safe record of tool starts: key -> [(perf_counter, thread name, args)]."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_key: dict[str, list[tuple[float, str, dict[str, Any]]]] = defaultdict(list)

    def record(self, key: str, args: dict[str, Any]) -> None:
        entry = (time.perf_counter(), threading.current_thread().name, args)
        with self._lock:
            self.by_key[key].append(entry)

    def count(self, key: str) -> int:
        with self._lock:
            return len(self.by_key.get(key, []))


class TimedReplay(Replay):
    """A Replay that stamps when each stream delivered its last delta."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ends: list[float] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        async for delta in super().stream(request):
            yield delta
        self.ends.append(time.perf_counter())


def call_text(name: str, args: dict[str, Any]) -> str:
    return f'<tool_call>{json.dumps({"name": name, "arguments": args})}</tool_call>'


def rate(rng: random.Random) -> float | None:
    return rng.choice([None, 2000.0, 5000.0])


async def loop_tasks(sched: Scheduler) -> int:
    """Tasks left on the scheduler's loop and on this one (besides the caller): early runs of
    ``ainvoke``/``run_turn`` live on the caller's loop."""
    async def count() -> int:
        return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

    return await asyncio.wrap_future(sched.submit(count())) + await count()


async def settle(sched: Scheduler) -> None:
    for _ in range(100):
        if await loop_tasks(sched) == 0 and sched.pending() == 0:
            return
        await asyncio.sleep(0.02)


# -- 1. side effects: never on a prefix --------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
async def test_side_effect_tools_start_only_on_the_complete_call(seed: int,
                                                                 sched: Scheduler) -> None:
    """Core path with ``run_side_effects=True``: 150 concurrent turns, each a side-effect call
    with a long body (some cut off mid-body) beside an early ``start_on`` call."""
    sched.claim_timeout = 300.0
    rng = random.Random(seed)
    starts = Starts()

    def write_record(key: str, body: str) -> str:
        starts.record(f"write:{key}", {"key": key, "body": body})
        return f"wrote {key} ({len(body)})"

    def lookup(query: str) -> str:
        starts.record(f"lookup:{query}", {"query": query})
        return f"result for {query}"

    tools = [partial_tool(write_record, side_effects=True, scheduler=sched),
             partial_tool(lookup, start_on=["query"], scheduler=sched)]

    n = 150
    cut = {r for r in range(n) if rng.random() < 0.25}
    assert 0 < len(cut) < n

    async def one(r: int) -> Any:
        key = f"run-{r}"
        body = f"body of {key} " * rng.randint(5, 40)
        text = (call_text("lookup", {"query": key}) + "\n"
                + call_text("write_record", {"key": key, "body": body}))
        if r in cut:   # the stream ends inside the body: a malformed, never-complete call
            text = text[:text.index(body) + rng.randint(1, len(body) - 1)]
        backend = Replay(text, tokens_per_s=rate(rng), seed=rng.randrange(1 << 30))
        session = sched.session(f"req-{r}", tools=tools, run_side_effects=True)
        result = await run_turn(backend, ChatRequest([]), parser=get_parser("hermes"),
                                session=session)
        return r, key, body, result

    outcomes = await asyncio.gather(*(one(r) for r in range(n)))
    for r, key, body, result in outcomes:
        timings = {t.name: t for t in result.session.timings.values()}
        claimed = {c.name: c for c in result.calls}
        if r in cut:
            assert "write_record" not in claimed
            assert starts.count(f"write:{key}") == 0        # never on a prefix
        else:
            found, value = await sched.aclaim(claimed["write_record"].id)
            assert found and value == f"wrote {key} ({len(body)})"
            [(started, _thread, args)] = starts.by_key[f"write:{key}"]
            final = timings["write_record"].args_final
            assert final is not None and started >= final   # after its call was complete
            assert args == {"key": key, "body": body}        # on the whole arguments
        found, value = await sched.aclaim(claimed["lookup"].id)
        assert found and value == f"result for {key}"
        [(_, lookup_thread, _)] = starts.by_key[f"lookup:{key}"]
        assert lookup_thread.startswith("conveyor-tool")     # it did start early
    await settle(sched)
    assert sched.pending() == 0 and await loop_tasks(sched) == 0


@pytest.mark.parametrize("seed", SEEDS[:1])
async def test_side_effect_tools_wait_for_the_framework_under_load(seed: int,
                                                                   sched: Scheduler) -> None:
    """ChatConveyor + create_agent, 120 runs of 2 turns at once: the side-effect tool starts
    only when the agent invokes it, after its message's stream ended; the early tool beside it
    is handed over once."""
    sched.claim_timeout = 300.0
    rng = random.Random(seed)
    starts = Starts()

    @tool
    def write_record(key: str, body: str) -> str:
        """Write a record."""
        starts.record(f"write:{key}", {"key": key, "body": body})
        return f"wrote {key}"

    @tool
    def lookup(query: str) -> str:
        """Look a query up."""
        starts.record(f"lookup:{query}", {"query": query})
        return f"result for {query}"

    tools = [partial_tool(write_record, side_effects=True),
             partial_tool(lookup, start_on=["query"])]
    n, turns = 120, 2

    async def one(r: int) -> tuple[int, TimedReplay, list[Any]]:
        msgs = []
        for t in range(turns):
            key = f"run-{r}-turn-{t}"
            msgs.append(call_text("lookup", {"query": key}) + "\n" + call_text(
                "write_record", {"key": key, "body": "x" * rng.randint(10, 200)}))
        replay = TimedReplay([*msgs, f"answer-{r}"], tokens_per_s=rate(rng),
                             seed=rng.randrange(1 << 30))
        out = await create_agent(ChatConveyor(backend=replay), tools=tools).ainvoke(
            {"messages": [HumanMessage(f"task {r}")]})
        return r, replay, out["messages"]

    for r, replay, msgs in await asyncio.gather(*(one(r) for r in range(n))):
        assert msgs[-1].content == f"answer-{r}"
        assert len(replay.ends) == turns + 1
        for t in range(turns):
            key = f"run-{r}-turn-{t}"
            [(started, thread, _)] = starts.by_key[f"write:{key}"]
            assert started > replay.ends[t]                   # after the whole message
            assert not thread.startswith("conveyor")          # run by the agent, not early
            assert starts.count(f"lookup:{key}") == 1
        results = {m.tool_call_id: str(m.content) for m in msgs if isinstance(m, ToolMessage)}
        for m in msgs:
            if isinstance(m, AIMessage):
                for c in m.tool_calls:
                    wanted = str(c["args"].get("query") or c["args"]["key"])
                    assert wanted in results[str(c["id"])]
    await settle(sched)
    assert sched.pending() == 0 and await loop_tasks(sched) == 0


# -- 2 and 3. approval: never before it; a denial cancels nothing else -------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("side_effects", [False, True])
async def test_approval_gates_hold_and_denials_cancel_nothing_else(
        seed: int, side_effects: bool, sched: Scheduler) -> None:
    """60 agent threads interrupted at once for approval of ``delete_file``, each message also
    holding an early ``lookup``; then each is approved or rejected at random."""
    sched.claim_timeout = 300.0
    rng = random.Random(seed)
    starts = Starts()

    @tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        starts.record(f"delete:{path}", {"path": path})
        return f"deleted {path}"

    @tool
    def lookup(query: str) -> str:
        """Look a query up."""
        starts.record(f"lookup:{query}", {"query": query})
        return f"result for {query}"

    gated = partial_tool(delete_file, **({"side_effects": True} if side_effects
                                         else {"start_on": ["path"]}))
    tools = [gated, partial_tool(lookup, start_on=["query"])]
    saver = InMemorySaver()
    n = 60
    approve = {r: rng.random() < 0.5 for r in range(n)}

    def agent(r: int) -> Any:
        path, query = f"/tmp/run-{r}.txt", f"run-{r}"
        calls = [call_text("lookup", {"query": query}), call_text("delete_file", {"path": path})]
        rng.shuffle(calls)
        model = ChatConveyor(backend=Replay(["\n".join(calls), f"answer-{r}"],
                                            tokens_per_s=rate(rng), seed=rng.randrange(1 << 30)),
                             approval_required=["delete_file"])
        return create_agent(model, tools=tools, checkpointer=saver, middleware=[
            HumanInTheLoopMiddleware(interrupt_on={"delete_file": True})])

    agents = [agent(r) for r in range(n)]
    configs: list[Any] = [{"configurable": {"thread_id": f"s{seed}-{side_effects}-{r}"}}
                          for r in range(n)]
    first = await asyncio.gather(*(a.ainvoke({"messages": [HumanMessage(f"task {r}")]}, c)
                                   for r, (a, c) in enumerate(zip(agents, configs, strict=True))))
    assert all("__interrupt__" in out for out in first)
    await asyncio.sleep(0.1)
    assert not any(starts.count(f"delete:/tmp/run-{r}.txt") for r in range(n))  # nothing yet
    approved_at = time.perf_counter()

    def decision(r: int) -> dict[str, Any]:
        return {"type": "approve"} if approve[r] else {"type": "reject", "message": "keep it"}

    final = await asyncio.gather(*(
        a.ainvoke(Command(resume={"decisions": [decision(r)]}), c)
        for r, (a, c) in enumerate(zip(agents, configs, strict=True))))

    for r, out in enumerate(final):
        path, query = f"/tmp/run-{r}.txt", f"run-{r}"
        msgs = out["messages"]
        assert msgs[-1].content == f"answer-{r}"
        tool_msgs = {m.name: m for m in msgs if isinstance(m, ToolMessage)}
        # the other tool of the message is delivered, its own result, exactly once
        assert tool_msgs["lookup"].content == f"result for {query}"
        [(_, lookup_thread, _)] = starts.by_key[f"lookup:{query}"]
        assert lookup_thread.startswith("conveyor-tool")     # it did start early
        if approve[r]:
            [(started, thread, args)] = starts.by_key[f"delete:{path}"]
            assert started > approved_at and args == {"path": path}
            assert not thread.startswith("conveyor")          # never an early start
            assert tool_msgs["delete_file"].content == f"deleted {path}"
        else:
            assert starts.count(f"delete:{path}") == 0
            assert "keep it" in str(tool_msgs["delete_file"].content)
    await settle(sched)
    assert sched.pending() == 0 and await loop_tasks(sched) == 0
