"""``plan_tool`` honours each step tool's ``side_effects`` and the request's approvals: a step of
such a tool never runs from a partial plan (and never from a truncated one); it runs once, when
the framework invokes the plan tool. The effect is checked: the email was not sent."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import AIMessage, HumanMessage

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import Replay
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.tools.plan import plan_tool

PLAN = '1. lookup("alice")\n2. send_email("$1")\njoin()\n'


def _call(plan: str, *, closed: bool = True) -> str:
    text = ('<tool_call>\n' + json.dumps({"name": "run_plan", "arguments": {"plan": plan}}))
    return text + ("\n</tool_call>" if closed else "")


def _tools(sent: list[str], looked: list[str], *, decorate_send: bool) -> object:
    def lookup(who: str) -> str:
        looked.append(who)
        return f"{who}@example.com"

    def send_email(to: str) -> str:
        sent.append(to)
        return f"sent to {to}"

    send = partial_tool(send_email, side_effects=True) if decorate_send else send_email
    return plan_tool({"lookup": lookup, "send_email": send})


@pytest.mark.parametrize("closed", [True, False], ids=["complete", "truncated"])
def test_side_effect_step_never_runs_from_the_stream(closed: bool, sched: Scheduler) -> None:
    sent: list[str] = []
    looked: list[str] = []
    run_plan = _tools(sent, looked, decorate_send=True)
    model = ChatConveyor(backend=Replay(_call(PLAN, closed=closed), tokens_per_s=500))
    msg = model.bind_tools([run_plan]).invoke([HumanMessage("mail alice")])
    time.sleep(0.3)                           # give any wrongly started step time to run
    assert sent == []                         # the effect did not happen
    if not closed:
        assert msg.tool_calls == [] and len(msg.invalid_tool_calls) == 1
        return
    # the framework invokes the plan tool: the side-effect step runs now, once
    out = run_plan(**msg.tool_calls[0]["args"])  # type: ignore[operator]
    assert sent == ["alice@example.com"]
    assert "sent to alice@example.com" in out


def test_approval_holds_a_step_of_an_undecorated_tool(sched: Scheduler) -> None:
    sent: list[str] = []
    looked: list[str] = []
    run_plan = _tools(sent, looked, decorate_send=False)
    model = ChatConveyor(backend=Replay(_call(PLAN), tokens_per_s=500),
                         approval_required=["send_email"])
    msg: AIMessage = model.bind_tools([run_plan]).invoke([HumanMessage("mail alice")])
    time.sleep(0.3)
    assert sent == []                         # not before the framework (and its approval)
    run_plan(**msg.tool_calls[0]["args"])  # type: ignore[operator]
    assert sent == ["alice@example.com"]      # once


def test_pure_plans_still_run_early(sched: Scheduler) -> None:
    looked: list[str] = []
    sent: list[str] = []
    run_plan = _tools(sent, looked, decorate_send=True)
    plan = '1. lookup("alice")\n2. lookup("bob")\njoin()\n'
    model = ChatConveyor(backend=Replay(_call(plan), tokens_per_s=500))
    msg = model.bind_tools([run_plan]).invoke([HumanMessage("who")])
    out = run_plan(**msg.tool_calls[0]["args"])  # type: ignore[operator]
    assert looked == ["alice", "bob"]         # once each: the early result was handed over
    assert msg.response_metadata["conveyor"]["calls"][0]["early"] is True
    assert "bob@example.com" in out
