"""Early abort stops decoding; approval-gated and side-effect tools never start early."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("langchain")
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from conveyor_integrations import EarlyAbort, partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import Replay
from conveyor_integrations.events import FieldDone
from conveyor_integrations.scheduler import Scheduler

BIO = "a very long biography that the model would keep writing " * 10
BAD = ('<tool_call>{"name": "save_person", "arguments": {"name": "Ann", "age": -3, '
       f'"bio": "{BIO}"}}}}</tool_call>')


class CheckAge:
    async def start(self, call: Any) -> None:
        return None

    async def feed(self, event: Any) -> None:
        if isinstance(event, FieldDone) and event.path == ("age",) and event.value < 0:
            raise EarlyAbort(f"age must be >= 0, got {event.value}")

    async def finish(self, args: dict[str, Any]) -> str:
        return "saved"

    async def cancel(self) -> None:
        return None


def make_save(log: list[dict[str, Any]]) -> Any:
    @tool
    def save_person(name: str, age: int, bio: str) -> str:
        """Save a person record."""
        log.append({"name": name, "age": age})
        return "saved"

    return save_person


def test_early_abort_stops_decoding_and_reaches_the_model(sched: Scheduler) -> None:
    log: list[dict[str, Any]] = []
    save = partial_tool(make_save(log), execution=CheckAge)
    replay = Replay([BAD, "Sorry, the age must be positive."], tokens_per_s=200)
    agent = create_agent(ChatConveyor(backend=replay), tools=[save])
    msgs = agent.invoke({"messages": [HumanMessage("save Ann")]})["messages"]

    ai = msgs[1]
    meta = ai.response_metadata["conveyor"]
    assert meta["abort"]["reason"] == "age must be >= 0, got -3"
    assert ai.response_metadata["finish_reason"] == "abort"
    assert ai.tool_calls[0]["args"] == {"name": "Ann", "age": -3}   # decoded so far
    assert replay.emitted[0] < len(Replay(BAD, seed=0).tokens(BAD)) / 2   # stopped early
    tm = next(m for m in msgs if isinstance(m, ToolMessage))
    assert tm.content == "age must be >= 0, got -3" and tm.status == "error"
    assert log == []                     # the tool itself never ran on the invalid call
    assert msgs[-1].content == "Sorry, the age must be positive."
    assert sched.pending() == 0


@pytest.mark.parametrize("side_effects", [False, True])
def test_tool_needing_approval_never_starts_before_approval(side_effects: bool,
                                                            sched: Scheduler) -> None:
    ran: list[tuple[str, float]] = []

    @tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        ran.append((path, time.perf_counter()))
        return f"deleted {path}"

    kw: dict[str, Any] = {"side_effects": True} if side_effects else {"start_on": ["path"]}
    gated = partial_tool(delete_file, **kw)
    call = '<tool_call>{"name": "delete_file", "arguments": {"path": "/tmp/report.txt"}}</tool_call>'
    model = ChatConveyor(backend=Replay([call, "Done."], tokens_per_s=500),
                         approval_required=["delete_file"])
    agent = create_agent(model, tools=[gated], checkpointer=InMemorySaver(),
                         middleware=[HumanInTheLoopMiddleware(interrupt_on={"delete_file": True})])
    config: Any = {"configurable": {"thread_id": f"t-{side_effects}"}}
    agent.invoke({"messages": [HumanMessage("delete the report")]}, config)
    time.sleep(0.2)
    assert ran == []                                   # waiting for a human: nothing ran
    approved_at = time.perf_counter()
    out = agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
    assert [p for p, _ in ran] == ["/tmp/report.txt"] and ran[0][1] > approved_at
    assert out["messages"][-1].content == "Done."


def test_denied_approval_runs_nothing(sched: Scheduler) -> None:
    ran: list[str] = []

    @tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        ran.append(path)
        return "deleted"

    gated = partial_tool(delete_file, side_effects=True)
    call = '<tool_call>{"name": "delete_file", "arguments": {"path": "/x"}}</tool_call>'
    agent = create_agent(ChatConveyor(backend=Replay([call, "Kept it."], tokens_per_s=500),
                                      approval_required=["delete_file"]),
                         tools=[gated], checkpointer=InMemorySaver(),
                         middleware=[HumanInTheLoopMiddleware(interrupt_on={"delete_file": True})])
    config: Any = {"configurable": {"thread_id": "deny"}}
    agent.invoke({"messages": [HumanMessage("delete /x")]}, config)
    out = agent.invoke(Command(resume={"decisions": [{"type": "reject", "message": "no"}]}),
                       config)
    assert ran == [] and out["messages"][-1].content == "Kept it."
