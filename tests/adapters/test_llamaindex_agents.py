"""ConveyorLLM in real LlamaIndex agents: FunctionAgent and a one-agent AgentWorkflow."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("llama_index.core")
from llama_index.core.agent.workflow import (
    AgentOutput,
    AgentStream,
    AgentWorkflow,
    FunctionAgent,
    ToolCallResult,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.tools import FunctionTool

from conveyor_integrations import EarlyAbort, partial_tool
from conveyor_integrations.adapters.llamaindex import ConveyorLLM, ConveyorTurnEndEvent
from conveyor_integrations.backends import Replay
from conveyor_integrations.events import FieldDone
from conveyor_integrations.scheduler import Scheduler

CALL = ('Let me look that up.\n<tool_call>{"name": "web_search", "arguments": '
        '{"query": "weather in Paris", "k": 3}}</tool_call>')
ANSWER = "It is sunny in Paris."


def make_search(log: list[str]) -> FunctionTool:
    def web_search(query: str, k: int = 3) -> str:
        """Search the web and return the top k results."""
        log.append(query)
        time.sleep(0.2)
        return f"top {k} results for {query}: sunny"

    return FunctionTool.from_defaults(fn=web_search)


class Recorder(BaseEventHandler):
    events: list[Any] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, ConveyorTurnEndEvent):
            self.events.append(event)


@pytest.fixture
def turn_events() -> Iterator[list[ConveyorTurnEndEvent]]:
    """The ConveyorTurnEndEvents fired during the test (from the root dispatcher)."""
    root = get_dispatcher()
    handler = Recorder(events=[])
    root.add_event_handler(handler)
    yield handler.events
    root.event_handlers.remove(handler)


def build(kind: str, llm: ConveyorLLM, tools: list[Any], streaming: bool = True) -> Any:
    if kind == "function_agent":
        return FunctionAgent(tools=tools, llm=llm, streaming=streaming)
    agent = FunctionAgent(name="assistant", description="Answers questions.", tools=tools,
                          llm=llm, streaming=streaming)
    return AgentWorkflow(agents=[agent])


async def run(agent: Any, question: str = "What is the weather in Paris?"
              ) -> tuple[str, list[Any]]:
    handler = agent.run(user_msg=question)
    events = [ev async for ev in handler.stream_events()]
    result = await handler
    return str(result), events


@pytest.mark.parametrize("streaming", [True, False])
@pytest.mark.parametrize("kind", ["function_agent", "agent_workflow"])
async def test_tool_starts_early_runs_once_and_answer_matches(
        kind: str, streaming: bool, sched: Scheduler,
        turn_events: list[ConveyorTurnEndEvent]) -> None:
    plain_log: list[str] = []
    plain_answer, plain_events = await run(build(
        kind, ConveyorLLM(backend=Replay([CALL, ANSWER], tokens_per_s=200)),
        [make_search(plain_log)], streaming))

    log: list[str] = []
    original = make_search(log)
    search = partial_tool(original, start_on=["query"])
    assert isinstance(search, FunctionTool) and search.metadata is original.metadata
    answer, events = await run(build(
        kind, ConveyorLLM(backend=Replay([CALL, ANSWER], tokens_per_s=200)), [search], streaming))

    assert answer == plain_answer == ANSWER
    assert log == ["weather in Paris"] and plain_log == ["weather in Paris"]   # exactly once
    results = [e for e in events if isinstance(e, ToolCallResult)]
    plain_results = [e for e in plain_events if isinstance(e, ToolCallResult)]
    assert [r.tool_output.content for r in results] == [r.tool_output.content
                                                       for r in plain_results]
    assert results[0].tool_output.content == "top 3 results for weather in Paris: sunny"
    assert [type(e).__name__ for e in events] == [type(e).__name__ for e in plain_events]
    if streaming:
        streamed = "".join(e.delta for e in events if isinstance(e, AgentStream))
        assert "Let me look that up." in streamed and ANSWER in streamed

    first: AgentOutput = next(e for e in events if isinstance(e, AgentOutput))
    assert first.tool_calls[0].tool_id == results[0].tool_id
    assert first.tool_calls[0].tool_kwargs == {"query": "weather in Paris", "k": 3}
    timing = first.raw["conveyor"]["calls"][0]
    assert timing["early"] is True
    assert timing["tool_start"] < timing["args_final"] < timing["decode_end"]
    assert first.raw["usage"]["completion_tokens"] > 0
    # the instrumentation event carries the same timings
    mine = [e for e in turn_events if e.request_id == first.raw["conveyor"]["request_id"]]
    assert len(mine) == 1 and mine[0].calls[0]["early"] is True
    assert sched.pending() == 0


async def test_two_identical_calls_each_get_their_own_result(sched: Scheduler) -> None:
    serial = itertools.count(1)
    ran: list[int] = []

    def lookup(key: str) -> str:
        """Look a key up."""
        n = next(serial)
        ran.append(n)
        time.sleep(0.1)
        return f"result #{n} for {key}"

    tool = partial_tool(FunctionTool.from_defaults(fn=lookup), start_on=["key"])
    one = '<tool_call>{"name": "lookup", "arguments": {"key": "a"}}</tool_call>\n'
    llm = ConveyorLLM(backend=Replay([one + one, "Done."], tokens_per_s=300))
    answer, events = await run(FunctionAgent(tools=[tool], llm=llm), "look a up twice")
    results = [e for e in events if isinstance(e, ToolCallResult)]
    assert answer == "Done."
    assert len(results) == 2 and len({r.tool_id for r in results}) == 2
    assert sorted(r.tool_output.content for r in results) == ["result #1 for a",
                                                              "result #2 for a"]
    assert sorted(ran) == [1, 2]                 # two executions, both early, none again
    first = next(e for e in events if isinstance(e, AgentOutput))
    assert [c["early"] for c in first.raw["conveyor"]["calls"]] == [True, True]
    assert sched.pending() == 0


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


@pytest.mark.parametrize("streaming", [True, False])
async def test_early_abort_stops_decoding_and_reaches_the_model(streaming: bool,
                                                                sched: Scheduler) -> None:
    log: list[dict[str, Any]] = []

    def save_person(name: str, age: int, bio: str) -> str:
        """Save a person record."""
        log.append({"name": name, "age": age})
        return "saved"

    save = partial_tool(FunctionTool.from_defaults(fn=save_person), execution=CheckAge)
    replay = Replay([BAD, "Sorry, the age must be positive."], tokens_per_s=200)
    llm = ConveyorLLM(backend=replay)
    answer, events = await run(FunctionAgent(tools=[save], llm=llm, streaming=streaming),
                               "save Ann")

    first = next(e for e in events if isinstance(e, AgentOutput))
    assert first.raw["conveyor"]["abort"]["reason"] == "age must be >= 0, got -3"
    assert first.raw["finish_reason"] == "abort"
    assert first.tool_calls[0].tool_kwargs == {"name": "Ann", "age": -3}   # decoded so far
    assert replay.emitted[0] < len(Replay(BAD, seed=0).tokens(BAD)) / 2    # stopped early
    result = next(e for e in events if isinstance(e, ToolCallResult))
    assert result.tool_output.content == "age must be >= 0, got -3"
    assert result.tool_output.is_error is True
    assert log == []                     # the tool itself never ran on the invalid call
    assert answer == "Sorry, the age must be positive."
    # the model's next request carries the abort reason as the tool's result
    tool_msg = next(m for m in replay.requests[1].messages if m["role"] == "tool")
    assert tool_msg["content"] == "age must be >= 0, got -3"
    assert tool_msg["tool_call_id"] == first.tool_calls[0].tool_id
    assert sched.pending() == 0


async def test_undecorated_tools_behave_as_before(sched: Scheduler) -> None:
    log: list[str] = []
    llm = ConveyorLLM(backend=Replay([CALL, ANSWER], tokens_per_s=500))
    answer, events = await run(FunctionAgent(tools=[make_search(log)], llm=llm))
    assert answer == ANSWER and log == ["weather in Paris"]
    first = next(e for e in events if isinstance(e, AgentOutput))
    assert first.raw["conveyor"]["calls"][0]["early"] is False
    assert first.raw["conveyor"]["calls"][0]["status"] == "not_partial"
    assert sched.pending() == 0


async def test_plain_function_decorated_then_made_a_tool(sched: Scheduler) -> None:
    log: list[str] = []

    @partial_tool(start_on=["query"])
    def web_search(query: str, k: int = 3) -> str:
        """Search the web and return the top k results."""
        log.append(query)
        time.sleep(0.2)
        return f"top {k} results for {query}: sunny"

    llm = ConveyorLLM(backend=Replay([CALL, ANSWER], tokens_per_s=200))
    answer, events = await run(FunctionAgent(tools=[FunctionTool.from_defaults(fn=web_search)],
                                             llm=llm))
    assert answer == ANSWER and log == ["weather in Paris"]
    first = next(e for e in events if isinstance(e, AgentOutput))
    assert first.raw["conveyor"]["calls"][0]["early"] is True
    assert sched.pending() == 0
