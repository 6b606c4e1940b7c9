"""Speculative calls: read-only predictions run before the model writes them, verified first.

Each test drives two requests of one agent run through a real :class:`Scheduler`: the first
writes a ``search`` whose ``follow_up`` predicts fetches of the pages it found; the second
follows it (its history holds the search's result) and writes its own fetch. The fetch body
logs every run with its arguments, so a test sees what ran and how often, and what the agent
was handed. ``sched`` (tests/conftest.py) is a scheduler with a store of its own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest

from conveyor_integrations import Prediction, Scheduler, Speculation, partial_tool
from conveyor_integrations.events import CallDone, CallStarted, FieldDone, ItemDone
from conveyor_integrations.store import ResultStore

PAGES = {"q": ["u1", "u2", "u3"]}


class Log:
    """Every run of a body: (tool, arguments), thread-safe."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, tuple[Any, ...]]] = []
        self.lock = threading.Lock()

    def add(self, tool: str, *args: Any) -> None:
        with self.lock:
            self.runs.append((tool, args))

    def count(self, tool: str) -> Counter[tuple[Any, ...]]:
        with self.lock:
            return Counter(a for t, a in self.runs if t == tool)


def predict_fetches(args: dict[str, Any], result: str) -> list[Prediction]:
    return [Prediction("fetch", {"urls": [u]}) for u in result.split()]


def make_tools(log: Log, *, fetch_read_only: bool = True, delay: float = 0.05,
               target: str = "fetch") -> tuple[Any, Any]:
    def follow_up(args: dict[str, Any], result: str) -> list[Prediction]:
        return [Prediction(target, {"urls": [u]}) for u in result.split()]

    @partial_tool(start_on=["query"], read_only=True, follow_up=follow_up)
    def search(query: str) -> str:
        log.add("search", query)
        return " ".join(PAGES.get(query, []))

    @partial_tool(items="urls", combine="\n".join, read_only=fetch_read_only)
    def fetch(urls: list[str], lang: str = "en") -> str:
        log.add("fetch", tuple(urls), lang)
        time.sleep(delay)
        return "\n".join(f"page {u} ({lang})" for u in urls)

    return search, fetch


def search_turn(sched: Scheduler, tools: list[Any], call_id: str = "c1",
                query: str = "q", **kw: Any) -> str:
    s = sched.session(tools=tools, **kw)
    s.handle([CallStarted(0, call_id, "search"), FieldDone(0, ("query",), query),
              CallDone(0, call_id, "search", {"query": query})])
    s.finish()
    found, result = sched.claim(call_id, spec=tools[0].conveyor_spec)
    assert found
    return str(result)


def fetch_turn(sched: Scheduler, tools: list[Any], urls: list[str], *, follows: list[str],
               call_id: str = "c2", lang: str | None = None, **kw: Any) -> tuple[str, Any]:
    s = sched.session(tools=tools, follows=follows, **kw)
    events: list[Any] = [CallStarted(0, call_id, "fetch")]
    events += [ItemDone(0, ("urls",), i, u) for i, u in enumerate(urls)]
    args: dict[str, Any] = {"urls": urls} if lang is None else {"urls": urls, "lang": lang}
    if lang is not None:
        events.append(FieldDone(0, ("lang",), lang))
    s.handle(events + [CallDone(0, call_id, "fetch", args)])
    s.finish()
    found, result = sched.claim(call_id, spec=tools[1].conveyor_spec)
    assert found
    return str(result), s


def settle(sched: Scheduler, *, held: int = 0, running: int = 0) -> dict[str, Any]:
    """The speculation's counters once nothing is held or running (bounded wait)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = sched.speculation.stats()
        if stats["held"] == held and stats["running"] == running:
            return stats
        time.sleep(0.01)
    raise AssertionError(f"speculation did not settle: {sched.speculation.stats()}")


def test_a_matched_prediction_is_delivered_once_and_its_body_runs_once(sched: Scheduler) -> None:
    log = Log()
    tools = list(make_tools(log, delay=0.3))
    assert search_turn(sched, tools) == "u1 u2 u3"
    result, session = fetch_turn(sched, tools, ["u1", "u2"], follows=["c1"])
    assert result == "page u1 (en)\npage u2 (en)"
    stats = settle(sched)
    # every predicted page ran once, speculatively: the two the model wrote were not run again
    assert log.count("fetch") == {(("u1",), "en"): 1, (("u2",), "en"): 1, (("u3",), "en"): 1}
    assert (stats["hits"], stats["misses"], stats["started"]) == (2, 1, 3)
    timing = session.timings[0]
    assert timing.speculated == 2 and timing.early
    assert session.metadata("hermes")["speculation"]["hits"] == 2


def test_a_mismatched_prediction_is_never_delivered(sched: Scheduler) -> None:
    """The model fetches u1 in German: the held run (u1 in English) is not its call."""
    log = Log()
    tools = list(make_tools(log))
    search_turn(sched, tools)
    result, _ = fetch_turn(sched, tools, ["u1"], follows=["c1"], lang="de")
    assert result == "page u1 (de)"
    stats = settle(sched)
    assert log.count("fetch")[(("u1",), "de")] == 1        # the model's own call ran
    assert stats["misses"] >= 1 and stats["wasted_s"] > 0


def test_a_request_that_does_not_follow_the_call_gets_nothing(sched: Scheduler) -> None:
    """Held runs belong to the agent run whose history has the call: another request (another
    user's, say) writing the same fetch runs it itself."""
    log = Log()
    tools = list(make_tools(log, delay=0.2))
    search_turn(sched, tools)
    fetch_turn(sched, tools, ["u1"], follows=["someone-else"])
    assert log.count("fetch")[(("u1",), "en")] == 2        # the held run and the model's own
    assert settle(sched, held=3)["hits"] == 0     # still held for the run that follows c1
    sched.speculation.close()
    stats = sched.speculation.stats()
    assert (stats["held"], stats["misses"]) == (0, 3)


def test_other_tool_objects_of_the_same_name_never_take_a_held_run(sched: Scheduler) -> None:
    log, other = Log(), Log()
    search, fetch = make_tools(log)
    search_turn(sched, [search, fetch])
    _, fetch2 = make_tools(other)
    result, _ = fetch_turn(sched, [search, fetch2], ["u1"], follows=["c1"])
    assert result == "page u1 (en)"
    assert other.count("fetch") == {(("u1",), "en"): 1}     # it ran its own body
    assert settle(sched)["hits"] == 0


def test_a_tool_that_is_not_read_only_is_never_speculated(sched: Scheduler) -> None:
    log = Log()
    tools = list(make_tools(log, fetch_read_only=False))
    search_turn(sched, tools)
    time.sleep(0.2)
    assert log.count("fetch") == {}
    assert sched.speculation.stats()["refused"] == 3


def test_a_side_effect_tool_in_a_predictable_pattern_is_never_speculated(
        sched: Scheduler) -> None:
    log = Log()
    search, fetch = make_tools(log, target="delete")

    @partial_tool(side_effects=True)
    def delete(urls: list[str]) -> str:
        log.add("delete", tuple(urls))
        return "deleted"

    for i in range(3):                       # the same pattern, turn after turn
        search_turn(sched, [search, fetch, delete], call_id=f"s{i}", run_side_effects=True)
    time.sleep(0.2)
    assert log.count("delete") == {}
    assert sched.speculation.stats()["refused"] == 9


def test_side_effects_and_read_only_together_is_an_error_at_decoration() -> None:
    with pytest.raises(TypeError, match="both read_only=True and side_effects=True"):
        @partial_tool(side_effects=True, read_only=True)
        def write(path: str) -> str:
            return path


def test_an_approval_gated_tool_is_never_speculated(sched: Scheduler) -> None:
    log = Log()
    tools = list(make_tools(log))
    search_turn(sched, tools, approval_required=["fetch"])
    time.sleep(0.2)
    assert log.count("fetch") == {}
    assert sched.speculation.stats()["refused"] == 3


def test_a_broken_follow_up_costs_the_speculation_not_the_call(sched: Scheduler) -> None:
    def broken(args: dict[str, Any], result: str) -> list[Prediction]:
        raise RuntimeError("bad predictor")

    @partial_tool(start_on=["query"], read_only=True, follow_up=broken)
    def search(query: str) -> str:
        return "u1"

    assert search_turn(sched, [search]) == "u1"
    assert sched.speculation.stats()["started"] == 0


def test_unadopted_runs_are_cancelled_after_hold_s() -> None:
    sched = Scheduler(speculation=Speculation(hold_s=0.2), store=ResultStore())
    try:
        log = Log()
        search_turn(sched, list(make_tools(log, delay=5.0)))
        stats = settle(sched)           # cancelled while they ran (the thread finishes its sleep)
        assert (stats["misses"], stats["hits"]) == (3, 0)
    finally:
        sched.close()


def test_budgets_hold_under_100_concurrent_tasks() -> None:
    """100 agent runs at once, each search predicting 10 fetches: at most max_per_request start
    per request, at most max_in_flight run at once in the process, and each agent's own fetch
    still gets its page."""
    spec = Speculation(max_per_request=3, max_in_flight=40)
    sched = Scheduler(speculation=spec, store=ResultStore())
    running, peak, lock = [0], [0], threading.Lock()
    ran: Counter[str] = Counter()

    def follow_up(args: dict[str, Any], result: str) -> list[Prediction]:
        return [Prediction("fetch", {"urls": [f"{args['query']}/{i}"]}) for i in range(10)]

    @partial_tool(start_on=["query"], read_only=True, follow_up=follow_up)
    async def search(query: str) -> str:
        return query

    @partial_tool(items="urls", combine="\n".join, read_only=True)
    async def fetch(urls: list[str]) -> str:
        only_speculated = not urls[0].endswith("/0")     # no agent writes these
        with lock:
            running[0] += only_speculated
            peak[0] = max(peak[0], running[0])
            ran[urls[0].split("/")[0]] += 1
        await asyncio.sleep(0.2)
        with lock:
            running[0] -= only_speculated
        return urls[0]

    async def agent(k: int) -> str:
        tools = [search, fetch]
        s = sched.session(tools=tools)
        s.handle([CallStarted(0, f"s{k}", "search"), FieldDone(0, ("query",), f"r{k}"),
                  CallDone(0, f"s{k}", "search", {"query": f"r{k}"})])
        s.finish()
        found, _ = await sched.aclaim(f"s{k}", spec=search.conveyor_spec)
        assert found
        s2 = sched.session(tools=tools, follows=[f"s{k}"])
        s2.handle([CallStarted(0, f"f{k}", "fetch"), ItemDone(0, ("urls",), 0, f"r{k}/0"),
                   CallDone(0, f"f{k}", "fetch", {"urls": [f"r{k}/0"]})])
        s2.finish()
        found, page = await sched.aclaim(f"f{k}", spec=fetch.conveyor_spec)
        assert found
        return str(page)

    async def main() -> list[str]:
        return await asyncio.gather(*(agent(k) for k in range(100)))

    try:
        pages = asyncio.run(main())
        assert pages == [f"r{k}/0" for k in range(100)]
        assert peak[0] <= 40 and spec.peak_in_flight <= 40
        assert max(ran.values()) <= 3
        stats = spec.stats()
        # the process-wide bound bit: fewer than the 3 per request could start
        assert stats["started"] < 300 and stats["refused"] > 1000 - 300
        assert stats["held"] == 0
    finally:
        sched.close()


def test_an_agent_run_past_its_wasted_seconds_stops_speculating() -> None:
    sched = Scheduler(speculation=Speculation(max_wasted_s=0.1), store=ResultStore())
    try:
        log = Log()
        tools = list(make_tools(log, delay=0.3))
        search_turn(sched, tools, call_id="c1")
        fetch_turn(sched, tools, ["zz"], follows=["c1"], call_id="c2")   # all three miss
        settle(sched)
        s3 = sched.session(tools=tools, follows=["c2"])                  # the same agent run
        s3.handle([CallStarted(0, "c3", "search"), FieldDone(0, ("query",), "q"),
                   CallDone(0, "c3", "search", {"query": "q"})])
        s3.finish()
        assert sched.claim("c3", spec=tools[0].conveyor_spec)[0]
        time.sleep(0.1)
        stats = sched.speculation.stats()
        assert stats["started"] == 3 and stats["wasted_s"] > 0.1
    finally:
        sched.close()


def test_an_mcp_tool_is_read_only_when_its_annotations_say_so() -> None:
    """langchain-mcp-adapters puts an MCP tool's annotations in the tool's ``metadata``."""
    pytest.importorskip("langchain_core")
    from langchain_core.tools import StructuredTool

    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    def made(metadata: dict[str, Any] | None, **kw: Any) -> bool:
        tool = StructuredTool.from_function(lookup, metadata=metadata)
        return bool(partial_tool(tool, start_on=["city"], **kw).conveyor_spec.read_only)

    assert made({"readOnlyHint": True, "destructiveHint": False})
    assert not made({"readOnlyHint": False})
    assert not made(None)
    assert not made({"readOnlyHint": True}, read_only=False)     # the user's word wins


def learned_tools(log: Log) -> list[Any]:
    @partial_tool(start_on=["query"], read_only=True)         # no follow_up: nothing declared
    def search(query: str) -> str:
        log.add("search", query)
        return "\n".join(f"- {query} {i} <https://pages.example/{query}/{i}>: a snippet"
                         for i in range(3))

    @partial_tool(items="urls", combine="\n".join, read_only=True)
    def fetch(urls: list[str]) -> str:
        log.add("fetch", tuple(urls))
        time.sleep(0.05)
        return "\n".join(f"page {u}" for u in urls)

    return [search, fetch]


@pytest.mark.parametrize("learn", [True, False])
def test_a_run_learns_search_then_fetch_from_its_own_turns(learn: bool) -> None:
    """Turn 1 searches, turn 2 fetches a result's URL: a run that learns predicts, after its
    second search (turn 3), a fetch of each URL found there, and turn 4's fetch takes one."""
    sched = Scheduler(speculation=Speculation(learn=learn), store=ResultStore())
    try:
        log = Log()
        tools = learned_tools(log)
        search_turn(sched, tools, call_id="c1", query="a")
        fetch_turn(sched, tools, ["https://pages.example/a/1"], follows=["c1"], call_id="c2")
        assert sched.speculation.stats()["started"] == 0           # nothing learned before
        search_turn(sched, tools, call_id="c3", query="b", follows=["c1", "c2"])
        page, _ = fetch_turn(sched, tools, ["https://pages.example/b/2"],
                             follows=["c1", "c2", "c3"], call_id="c4")
        assert page == "page https://pages.example/b/2"
        stats = settle(sched)
        if learn:
            assert (stats["started"], stats["hits"], stats["misses"]) == (3, 1, 2)
            assert log.count("fetch")[(("https://pages.example/b/2",),)] == 1
        else:
            assert stats["started"] == 0
    finally:
        sched.close()


@pytest.mark.parametrize("k", [3, 5])
def test_a_start_on_tool_takes_the_held_run_on_its_streamed_field_then_checks_the_call(
        sched: Scheduler, k: int) -> None:
    """A held ``lookup(city="Lyon")`` (k defaults to 3) is taken as soon as ``city`` is final;
    if the complete call then says ``k=5`` the held result is void and never handed over: the
    tool runs on the complete arguments."""
    log = Log()

    @partial_tool(start_on=["query"], read_only=True,
                  follow_up=lambda args, result: [Prediction("lookup", {"city": "Lyon"})])
    def search(query: str) -> str:
        return "Lyon"

    @partial_tool(start_on=["city"], read_only=True)
    def lookup(city: str, k: int = 3) -> str:
        log.add("lookup", city, k)
        return f"{city}: {k} facts"

    tools = [search, lookup]
    search_turn(sched, tools)
    s = sched.session(tools=tools, follows=["c1"])
    s.handle([CallStarted(0, "c2", "lookup"), FieldDone(0, ("city",), "Lyon"),
              FieldDone(0, ("k",), k), CallDone(0, "c2", "lookup", {"city": "Lyon", "k": k})])
    s.finish()
    assert sched.claim("c2", spec=lookup.conveyor_spec) == (True, f"Lyon: {k} facts")
    settle(sched)
    assert log.count("lookup") == ({("Lyon", 3): 1} if k == 3 else {("Lyon", 3): 1, ("Lyon", 5): 1})
    if k == 3:
        assert s.timings[0].speculated == 1 and not s.timings[0].reran
    else:       # the early run was void (taken or not yet, as the loop went): run again
        assert s.timings[0].reran
