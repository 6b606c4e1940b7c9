"""Promises 2, 3, 4 and 7 of the redesign: what happens to a call, whatever shape it has.

2. A field the tool's schema does not have (LangChain drops it) does not void the early result.
3. ``items=`` hands over the tool's own result shape, combined by the user's ``combine=``.
4. A call cut by ``finish_reason="length"`` (empty or half-written arguments) never runs.
7. An async tool's early execution runs on the caller's event loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

pytest.importorskip("langchain")
pytest.importorskip("llama_index.core")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCallResult
from llama_index.core.tools import FunctionTool

from conveyor_integrations import Scheduler, partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.adapters.llamaindex import ConveyorLLM
from conveyor_integrations.backends import Replay
from conveyor_integrations.tools.validate import ValidateExecution

ANSWER = "Done."


def call_text(name: str, args: dict[str, Any]) -> str:
    return (f'Working on it.\n<tool_call>{{"name": "{name}", "arguments": {json.dumps(args)}}}'
            "</tool_call>")


def tool_messages(msgs: list[Any]) -> list[ToolMessage]:
    return [m for m in msgs if isinstance(m, ToolMessage)]


# -- 2. a field outside the schema -----------------------------------------------------------

@pytest.mark.parametrize("explicit", [True, False], ids=["explicit_scheduler", "default"])
def test_off_schema_field_keeps_the_early_result(explicit: bool, sched: Scheduler) -> None:
    scheduler = sched if explicit else None
    log: list[str] = []

    @tool
    def search(query: str) -> str:
        """Search the web."""
        log.append(query)
        return f"result for {query}"

    fast = partial_tool(search, start_on=["query"], scheduler=scheduler)
    text = call_text("search", {"query": "x", "junk": 1})
    model = ChatConveyor(backend=Replay([text, ANSWER], tokens_per_s=2000), scheduler=scheduler)
    msgs = list(create_agent(model, tools=[fast]).invoke(
        {"messages": [HumanMessage("search x")]})["messages"])

    assert log == ["x"]                                # exactly once
    assert [m.content for m in tool_messages(msgs)] == ["result for x"]
    assert tool_messages(msgs)[0].status == "success"
    first: AIMessage = msgs[1]
    assert first.response_metadata["conveyor"]["calls"][0]["early"] is True
    assert msgs[-1].content == ANSWER
    assert sched.pending() == 0


# -- 3. items= with combine= ------------------------------------------------------------------

def make_multi_search(log: list[list[str]]) -> Any:
    @tool
    def search(queries: list[str]) -> str:
        """Search the web for each query; one JSON object per query."""
        log.append(list(queries))
        return json.dumps([{"query": q, "hits": [f"{q}-1", f"{q}-2"]} for q in queries])

    return search


def merge(parts: list[str]) -> str:
    return json.dumps([x for p in parts for x in json.loads(p)])


def test_items_with_combine_hands_over_the_tools_own_result(sched: Scheduler) -> None:
    args = {"queries": ["paris", "lyon", "nice"]}
    text = call_text("search", args)

    plain_log: list[list[str]] = []
    plain = make_multi_search(plain_log)
    plain_msgs = list(create_agent(
        ChatConveyor(backend=Replay([text, ANSWER], tokens_per_s=2000)), tools=[plain]).invoke(
        {"messages": [HumanMessage("search")]})["messages"])
    expected = plain.invoke(args)
    assert [m.content for m in tool_messages(plain_msgs)] == [expected]

    log: list[list[str]] = []
    fast = partial_tool(make_multi_search(log), items="queries", combine=merge)
    msgs = list(create_agent(
        ChatConveyor(backend=Replay([text, ANSWER], tokens_per_s=2000)), tools=[fast]).invoke(
        {"messages": [HumanMessage("search")]})["messages"])

    contents = [m.content for m in tool_messages(msgs)]
    assert contents == [expected]                      # byte for byte the tool's own result
    assert json.loads(contents[0]) == json.loads(expected)
    assert sorted(log) == [["lyon"], ["nice"], ["paris"]]   # once per item, nothing again
    assert msgs[1].response_metadata["conveyor"]["calls"][0]["early"] is True
    assert sched.pending() == 0


def test_items_without_combine_is_a_type_error_at_decoration(sched: Scheduler) -> None:
    with pytest.raises(TypeError, match="combine"):
        partial_tool(make_multi_search([]), items="queries")


# -- 4. truncated and empty calls -------------------------------------------------------------

def empty_call() -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "search", "arguments": ""}}]},
        {"finish_reason": "length"}]


def cut_call(arguments: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "search", "arguments": arguments}}]},
        {"finish_reason": "length"}]


TRUNCATED = {
    "empty_arguments": empty_call,
    # cut inside the start_on field's value: the field never became final
    "cut_in_a_value": lambda: cut_call('{"query": "weather in Pa'),
    # cut after the start_on field was final, before the object closed
    "cut_after_a_field": lambda: cut_call('{"query": "weather in Paris", "k'),
}


def lc_search(log: list[str]) -> Any:
    @tool
    def search(query: str = "everything") -> str:
        """Search the web (with a default query, so that {} would be a valid call)."""
        log.append(query)
        return f"result for {query}"

    return search


@pytest.mark.parametrize("decorate", [True, False], ids=["decorated", "undecorated"])
@pytest.mark.parametrize("shape", list(TRUNCATED))
def test_truncated_call_never_runs_langchain(shape: str, decorate: bool,
                                             sched: Scheduler) -> None:
    log: list[str] = []
    search = lc_search(log)
    if decorate:
        search = partial_tool(search, start_on=["query"])
    replay = Replay([TRUNCATED[shape](), [{"content": ANSWER}, {"finish_reason": "stop"}]],
                    tokens_per_s=2000, tool_format="openai")
    msgs = list(create_agent(ChatConveyor(backend=replay), tools=[search]).invoke(
        {"messages": [HumanMessage("search")]})["messages"])

    _assert_never_delivered(log, shape, decorate)
    assert tool_messages(msgs) == []
    first: AIMessage = msgs[1]
    assert first.tool_calls == []
    assert [c["name"] for c in first.invalid_tool_calls] == ["search"]
    assert first.response_metadata["finish_reason"] == "length"
    assert sched.pending() == 0


def _assert_never_delivered(log: list[str], shape: str, decorate: bool) -> None:
    if shape == "cut_after_a_field" and decorate:
        # a start_on tool may start on a field that was final before the call was cut; that
        # run is cancelled and its result never delivered, and nothing runs it again
        assert log in ([], ["weather in Paris"])
    else:
        assert log == []                               # the body never ran


@pytest.mark.parametrize("decorate", [True, False], ids=["decorated", "undecorated"])
@pytest.mark.parametrize("shape", list(TRUNCATED))
async def test_truncated_call_never_runs_llamaindex(shape: str, decorate: bool,
                                                    sched: Scheduler) -> None:
    log: list[str] = []

    def search(query: str = "everything") -> str:
        """Search the web (with a default query, so that {} would be a valid call)."""
        log.append(query)
        return f"result for {query}"

    ftool = FunctionTool.from_defaults(fn=search)
    if decorate:
        ftool = partial_tool(ftool, start_on=["query"])
    replay = Replay([TRUNCATED[shape](), [{"content": ANSWER}, {"finish_reason": "stop"}]],
                    tokens_per_s=2000, tool_format="openai")
    handler = FunctionAgent(tools=[ftool], llm=ConveyorLLM(backend=replay)).run(
        user_msg="search")
    events = await asyncio.wait_for(_collect(handler), timeout=30)

    _assert_never_delivered(log, shape, decorate)
    assert [e for e in events if isinstance(e, ToolCallResult)] == []
    first = next(e for e in events if isinstance(e, AgentOutput))
    assert first.tool_calls == []
    assert sched.pending() == 0


async def _collect(handler: Any) -> list[Any]:
    events = [ev async for ev in handler.stream_events()]
    await handler
    return events


# -- 7. async tools on the caller's loop --------------------------------------------------------

@pytest.mark.parametrize("explicit", [True, False], ids=["explicit_scheduler", "default"])
async def test_async_tool_runs_early_on_the_callers_loop(explicit: bool,
                                                         sched: Scheduler) -> None:
    scheduler = sched if explicit else None
    loops: list[asyncio.AbstractEventLoop] = []

    @tool
    async def search(query: str) -> str:
        """Search the web."""
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0.05)
        return f"result for {query}"

    fast = partial_tool(search, start_on=["query"], scheduler=scheduler)
    text = call_text("search", {"query": "paris"}) + " and some more words after the call"
    model = ChatConveyor(backend=Replay([text, ANSWER], tokens_per_s=500), scheduler=scheduler)
    out = await create_agent(model, tools=[fast]).ainvoke(
        {"messages": [HumanMessage("search paris")]})
    msgs = out["messages"]

    assert len(loops) == 1                             # exactly once
    assert loops[0] is asyncio.get_running_loop()
    assert [m.content for m in tool_messages(msgs)] == ["result for paris"]
    assert msgs[1].response_metadata["conveyor"]["calls"][0]["early"] is True
    assert sched.pending() == 0


# -- a decorated function made a framework tool, its call stopped by an early abort ----------

class _Signup(BaseModel):
    name: str
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    plan: str = "starter"


def _signup(log: list[dict[str, Any]], sched: Scheduler) -> Any:
    async def save(args: dict[str, Any]) -> str:
        return f"saved {args['name']}"

    async def signup(name: str, email: str, plan: str = "starter") -> str:
        """Create an account."""
        log.append({"name": name, "email": email, "plan": plan})
        return f"saved {name}"

    return partial_tool(signup, scheduler=sched,
                        execution=lambda: ValidateExecution(run=save, model=_Signup))


_BAD_EMAIL = call_text("signup", {"name": "Ann", "email": "not-an-email", "plan": "team"})


@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
async def test_aborted_call_of_a_decorated_function_never_runs_its_body(
        framework: str, sched: Scheduler) -> None:
    """The email fails validation while it is decoded: decoding stops, the framework invokes
    the function with the partial arguments (``plan`` filled by its default), and the body never
    runs on them; the agent gets the validation error as the tool's result."""
    log: list[dict[str, Any]] = []
    fn = _signup(log, sched)
    backend = Replay([_BAD_EMAIL, ANSWER], tokens_per_s=2000)
    if framework == "langchain":
        from langchain_core.tools import StructuredTool

        agent = create_agent(ChatConveyor(backend=backend, scheduler=sched),
                             tools=[StructuredTool.from_function(coroutine=fn)])
        msgs = (await agent.ainvoke({"messages": [HumanMessage("sign Ann up")]}))["messages"]
        results = [str(m.content) for m in tool_messages(msgs)]
    else:
        li_agent = FunctionAgent(tools=[FunctionTool.from_defaults(async_fn=fn)],
                                 llm=ConveyorLLM(backend=backend, scheduler=sched))
        handler = li_agent.run("sign Ann up")
        results = [str(ev.tool_output.content) async for ev in handler.stream_events()
                   if isinstance(ev, ToolCallResult)]
        await handler
    assert log == []                                   # never run on the truncated call
    assert len(results) == 1 and "email" in results[0], results   # the validation error
