"""Observers: every step of an early execution is told, in order, once; none when unwatched."""

from __future__ import annotations

import threading
import time

from conveyor_integrations import EarlyAbort, partial_tool
from conveyor_integrations.events import (
    CallDone,
    CallMalformed,
    CallStarted,
    FieldDone,
    ItemDone,
    StreamDone,
)
from conveyor_integrations.observers import (
    ExecutionEvent,
    add_observer,
    open_observers,
    remove_observer,
)
from conveyor_integrations.scheduler import Scheduler


class Recorder:
    def __init__(self) -> None:
        self.events: list[ExecutionEvent] = []
        self.opened: list[str] = []
        self.lock = threading.Lock()

    def open(self, request_id: str):
        self.opened.append(request_id)
        return self.note

    def note(self, event: ExecutionEvent) -> None:
        with self.lock:
            self.events.append(event)

    def kinds(self, call_id: str) -> list[str]:
        with self.lock:
            return [e.kind for e in self.events if e.call_id == call_id]


def wait_for(pred, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.005)


def test_start_on_call_is_told_start_to_claim(sched: Scheduler) -> None:
    @partial_tool(start_on=["query"])
    def search(query: str) -> str:
        return query.upper()

    rec = Recorder()
    s = sched.session(tools=[search], observers=[rec], request_id="r1")
    s.handle([CallStarted(0, "c1", "search"), FieldDone(0, ("query",), "paris"),
              CallDone(0, "c1", "search", {"query": "paris"}), StreamDone()])
    assert sched.claim("c1", args={"query": "paris"}) == (True, "PARIS")
    wait_for(lambda: "finish" in rec.kinds("c1"))
    assert rec.opened == ["r1"]
    kinds = rec.kinds("c1")       # the claim may come while the tool runs: it waits
    assert sorted(kinds) == sorted(["start", "tool_start", "piece", "claim", "finish"]), kinds
    assert kinds[0] == "start" and kinds.index("tool_start") < kinds.index("finish")
    ev = rec.events[0]
    assert (ev.request_id, ev.tool, ev.index) == ("r1", "search", 0)


def test_items_are_pieces(sched: Scheduler) -> None:
    @partial_tool(items="urls", combine=lambda parts: parts)
    def fetch(urls: list[str]) -> list[str]:
        return urls

    rec = Recorder()
    s = sched.session(tools=[fetch], observers=[rec])
    s.handle([CallStarted(0, "c2", "fetch"), ItemDone(0, ("urls",), 0, "a"),
              ItemDone(0, ("urls",), 1, "b"), CallDone(0, "c2", "fetch", {"urls": ["a", "b"]}),
              StreamDone()])
    assert sched.claim("c2", args={"urls": ["a", "b"]}) == (True, [["a"], ["b"]])
    wait_for(lambda: "finish" in rec.kinds("c2"))
    assert [e.detail.get("item") for e in rec.events if e.kind == "piece"] == [0, 1]


def test_abort_is_told_and_finishes_aborted(sched: Scheduler) -> None:
    class NonNegative:
        async def start(self, call): return None
        async def feed(self, event):
            if isinstance(event, FieldDone) and event.value < 0:
                raise EarlyAbort("a must be >= 0")
        async def finish(self, args): return "ok"
        async def cancel(self): return None

    @partial_tool(execution=NonNegative)
    def record(a: int) -> str:
        return "ok"

    rec = Recorder()
    s = sched.session(tools=[record], observers=[rec])
    s.handle([CallStarted(0, "c6", "record"), FieldDone(0, ("a",), -3)])
    wait_for(lambda: "abort" in rec.kinds("c6"))
    assert rec.kinds("c6") == ["start", "tool_start", "finish", "abort"]
    assert [e.detail for e in rec.events if e.kind == "abort"] == [{"reason": "a must be >= 0"}]
    s.cancel()


def test_malformed_call_is_cancelled_never_claimed(sched: Scheduler) -> None:
    ran = threading.Event()

    @partial_tool(start_on=["query"])
    def search(query: str) -> str:
        ran.set()
        return query

    rec = Recorder()
    s = sched.session(tools=[search], observers=[rec])
    s.handle([CallStarted(0, "c3", "search"), FieldDone(0, ("query",), "x")])
    s.handle([CallMalformed(0, "c3", "search", "bad json"), StreamDone()])
    wait_for(lambda: "cancel" in rec.kinds("c3"))
    kinds = rec.kinds("c3")
    assert "claim" not in kinds and kinds.count("cancel") == 1
    assert next(e for e in rec.events if e.kind == "cancel").detail["status"] == "malformed"


def test_added_observer_sees_every_session_until_removed(sched: Scheduler) -> None:
    @partial_tool(start_on=["query"])
    def search(query: str) -> str:
        return query

    rec = Recorder()
    add_observer(rec)
    add_observer(rec)                   # once per observer
    try:
        s = sched.session(tools=[search])
        s.handle([CallStarted(0, "c4", "search"), FieldDone(0, ("query",), "q"),
                  CallDone(0, "c4", "search", {"query": "q"}), StreamDone()])
        assert sched.claim("c4", args={"query": "q"}) == (True, "q")
    finally:
        remove_observer(rec)
    assert len(rec.opened) == 1 and rec.kinds("c4").count("start") == 1
    assert open_observers("later") is None


def test_a_failing_observer_does_not_break_the_call(sched: Scheduler) -> None:
    @partial_tool(start_on=["query"])
    def search(query: str) -> str:
        return query

    class Broken:
        def open(self, request_id: str):
            def boom(event: ExecutionEvent) -> None:
                raise RuntimeError("observer bug")
            return boom

    class BrokenOpen:
        def open(self, request_id: str):
            raise RuntimeError("cannot open")

    s = sched.session(tools=[search], observers=[Broken(), BrokenOpen()])
    s.handle([CallStarted(0, "c5", "search"), FieldDone(0, ("query",), "q"),
              CallDone(0, "c5", "search", {"query": "q"}), StreamDone()])
    assert sched.claim("c5", args={"query": "q"}) == (True, "q")
