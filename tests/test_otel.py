"""OpenTelemetry tracing (``conveyor_integrations.otel``): the spans of real agent runs.

Every test traces into an in-memory exporter through a ``TracerProvider`` passed to
``instrument()``, and un-instruments when it ends. A second span processor records the spans
started and ended, so a test can tell that no span was left open.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import Replay
from conveyor_integrations.events import CallDone, CallStarted, FieldDone, StreamDone
from conveyor_integrations.otel import instrument, uninstrument
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.store import ResultStore

# the call, then a sentence: the tool starts while the rest of the message is decoded
CALL = ('<tool_call>{"name": "web_search", "arguments": {"query": "weather in Paris"}}'
        '</tool_call>\nI am reading the results now and will answer in a moment.')
ANSWER = "It is sunny in Paris."
WAIT_S = 10.0
"""The most a test waits for a span that ends on another thread (never reached when it works)."""


class OpenSpans(SpanProcessor):
    """Records the ids of the spans started and not yet ended."""

    def __init__(self) -> None:
        self.open: dict[int, str] = {}
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        with self._lock:
            self.open[span.context.span_id] = span.name

    def on_end(self, span: ReadableSpan) -> None:
        assert span.context is not None
        with self._lock:
            self.open.pop(span.context.span_id, None)


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.open = OpenSpans()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.provider.add_span_processor(self.open)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        out = [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]
        return sorted(out, key=lambda s: s.start_time or 0)

    def wait_for(self, name: str, n: int = 1) -> list[ReadableSpan]:
        """The finished spans named ``name`` once there are ``n`` of them."""
        deadline = time.monotonic() + WAIT_S
        while len(self.spans(name)) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.spans(name)


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced()
    instrument(tracer_provider=t.provider)
    try:
        yield t
    finally:
        uninstrument()


def make_search(log: list[str], *, is_async: bool = False) -> Any:
    if is_async:
        @tool
        async def web_search(query: str) -> str:
            """Search the web."""
            log.append(query)
            await asyncio.sleep(0)
            return f"results for {query}: sunny"
    else:
        @tool
        def web_search(query: str) -> str:
            """Search the web."""
            log.append(query)
            return f"results for {query}: sunny"

    return partial_tool(web_search, start_on=["query"])


def as_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_call", "id": call["id"], "name": call["name"], "args": call["args"]}


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


# -- one real agent run ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_agent_run_span_tree(mode: str, traced: Traced, sched: Scheduler) -> None:
    log: list[str] = []
    search = make_search(log, is_async=mode == "async")
    agent = create_agent(ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=50)),
                         tools=[search])
    tracer = traced.provider.get_tracer("tests")
    question = {"messages": [HumanMessage("What is the weather in Paris?")]}
    with tracer.start_as_current_span("invoke_agent"):
        out = (agent.invoke(question) if mode == "sync" else await agent.ainvoke(question))

    messages = out["messages"]
    assert messages[-1].content == ANSWER
    assert log == ["weather in Paris"]                       # the tool ran once, early
    first: AIMessage = messages[1]
    call_id = first.tool_calls[0]["id"]

    [root] = traced.spans("invoke_agent")
    chats = traced.spans("chat conveyor")
    [execution] = traced.spans("execute_tool web_search")
    assert len(chats) == 2                                   # one per model turn
    assert {s.context.trace_id for s in traced.spans()} == {root.context.trace_id}
    assert [parent_id(c) for c in chats] == [span_id(root)] * 2
    assert parent_id(execution) == span_id(chats[0])         # the turn that decoded the call

    a = attrs(execution)
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["gen_ai.tool.name"] == "web_search"
    assert a["gen_ai.tool.call.id"] == call_id
    assert a["conveyor.early"] is True and a["conveyor.claimed"] is True
    assert a["conveyor.status"] == "ok" and a["conveyor.pieces"] == 1
    assert execution.status.status_code is StatusCode.UNSET
    steps = [e.name for e in execution.events]
    assert sorted(steps) == ["claim", "finish", "piece", "tool_start"]     # each step once
    assert steps.index("tool_start") < steps.index("finish")
    assert steps.index("piece") < steps.index("finish")
    # it started while the message was still being decoded
    assert execution.start_time is not None and chats[0].end_time is not None
    assert execution.start_time < chats[0].end_time

    turn = attrs(chats[0])
    assert turn["gen_ai.operation.name"] == "chat"
    assert turn["gen_ai.request.model"] == "conveyor"
    assert turn["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert turn["conveyor.early_calls"] == 1 and turn["gen_ai.usage.output_tokens"] > 0
    [message] = json.loads(turn["gen_ai.output.messages"])
    assert message["finish_reason"] == "tool_call"
    assert {"type": "tool_call", "id": call_id, "name": "web_search",
            "arguments": {"query": "weather in Paris"}} in message["parts"]
    assert attrs(chats[1])["gen_ai.response.finish_reasons"] == ("stop",)
    assert json.loads(attrs(chats[1])["gen_ai.output.messages"])[0]["parts"] == [
        {"type": "text", "content": ANSWER}]
    assert traced.open.open == {}


# -- failures -------------------------------------------------------------------------------------
def test_a_tool_that_raises_gives_an_error_span(traced: Traced, sched: Scheduler) -> None:
    @partial_tool(start_on=["query"])
    @tool
    def web_search(query: str) -> str:
        """Search the web."""
        raise ValueError(f"no index for {query}")

    msg = ChatConveyor(backend=Replay(CALL, tokens_per_s=200)).bind_tools([web_search]
                                                                         ).invoke("go")
    with pytest.raises(ValueError, match="no index"):
        web_search.invoke(as_tool_call(msg.tool_calls[0]))

    [execution] = traced.wait_for("execute_tool web_search")
    assert execution.status.status_code is StatusCode.ERROR
    a = attrs(execution)
    assert a["gen_ai.tool.call.id"] == msg.tool_calls[0]["id"]
    assert a["conveyor.status"] == "error" and a["error.type"] == "ValueError"
    assert a["conveyor.claimed"] is True
    [chat] = traced.spans("chat conveyor")
    assert chat.status.status_code is StatusCode.UNSET     # the model's turn itself went well
    assert traced.open.open == {}


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_abandoned_stream_cancels_and_ends_every_span(
        mode: str, traced: Traced, sched: Scheduler) -> None:
    release = threading.Event()

    @partial_tool(start_on=["query"])
    @tool
    def web_search(query: str) -> str:
        """Search the web."""
        release.wait(WAIT_S)
        return "never used"

    model = ChatConveyor(backend=Replay(CALL, tokens_per_s=100)).bind_tools([web_search])
    call_id = None
    if mode == "sync":
        gen = model.stream("go")
        for chunk in gen:
            if chunk.tool_call_chunks:
                call_id = chunk.tool_call_chunks[0]["id"]
                break
        gen.close()
    else:
        agen = model.astream("go")
        async for chunk in agen:
            if chunk.tool_call_chunks:
                call_id = chunk.tool_call_chunks[0]["id"]
                break
        await agen.aclose()
    assert call_id is not None                 # the call had started: its execution exists

    try:
        [execution] = await asyncio.to_thread(traced.wait_for, "execute_tool web_search")
    finally:
        release.set()
    a = attrs(execution)
    assert a["gen_ai.tool.call.id"] == call_id
    assert a["conveyor.cancelled"] is True and a["conveyor.claimed"] is False
    assert execution.status.status_code is StatusCode.ERROR
    assert "cancel" in [e.name for e in execution.events]
    [chat] = await asyncio.to_thread(traced.wait_for, "chat conveyor")
    assert chat.status.status_code is StatusCode.ERROR      # the turn never finished
    assert parent_id(execution) == span_id(chat)
    assert traced.open.open == {}


def test_an_unclaimed_call_that_is_released_ends_its_span(traced: Traced,
                                                          sched: Scheduler) -> None:
    log: list[str] = []
    search = make_search(log)
    msg = ChatConveyor(backend=Replay(CALL, tokens_per_s=200)).bind_tools([search]).invoke("go")
    call_id = msg.tool_calls[0]["id"]
    assert sched.release(call_id, "the framework will not invoke it")   # never claimed
    [execution] = traced.wait_for("execute_tool web_search")
    a = attrs(execution)
    assert a["conveyor.cancelled"] is True and a["conveyor.claimed"] is False
    assert a["conveyor.reason"] == "the framework will not invoke it"
    assert execution.status.status_code is StatusCode.ERROR
    assert traced.open.open == {}


def test_a_call_never_claimed_expires_and_ends_its_span(traced: Traced,
                                                       sched: Scheduler) -> None:
    short = Scheduler(claim_timeout=0.2, store=ResultStore())   # expires soon after the turn
    try:
        model = ChatConveyor(backend=Replay(CALL, tokens_per_s=200), scheduler=short)
        msg = model.bind_tools([make_search([])]).invoke("go")
        [execution] = traced.wait_for("execute_tool web_search")
    finally:
        short.close()
    a = attrs(execution)
    assert a["gen_ai.tool.call.id"] == msg.tool_calls[0]["id"]
    assert a["conveyor.cancelled"] is True and a["conveyor.claimed"] is False
    assert "expired unclaimed" in a["conveyor.reason"]
    steps = {e.name: dict(e.attributes or {}) for e in execution.events}
    assert steps["finish"]["conveyor.status"] == "ok"      # it finished; nobody took the result
    assert "claim" not in steps and "expired unclaimed" in steps["cancel"]["conveyor.reason"]
    assert execution.status.status_code is StatusCode.ERROR
    assert traced.open.open == {}


# -- instrument / uninstrument --------------------------------------------------------------------
def one_turn(log: list[str]) -> None:
    """One model turn with one early call, and the claim of its result."""
    search = make_search(log)
    msg = ChatConveyor(backend=Replay(CALL, tokens_per_s=200)).bind_tools([search]).invoke("go")
    assert search.invoke(as_tool_call(msg.tool_calls[0])).content.startswith("results for")


def test_nothing_is_traced_after_uninstrument(traced: Traced, sched: Scheduler) -> None:
    log: list[str] = []
    one_turn(log)
    assert [s.name for s in traced.spans()] == ["chat conveyor", "execute_tool web_search"]
    uninstrument()
    traced.exporter.clear()
    one_turn(log)
    assert log == ["weather in Paris"] * 2                   # it still ran early, untraced
    assert traced.spans() == [] and traced.open.open == {}
    uninstrument()                                           # again: a no-op


def test_a_request_opened_while_instrumented_still_ends_its_span(traced: Traced,
                                                                 sched: Scheduler) -> None:
    @partial_tool(start_on=["text"])
    def shout(text: str) -> str:
        return text.upper()

    session = sched.session(tools=[shout])
    uninstrument()
    session.handle([CallStarted(0, "c1", "shout"), FieldDone(0, ("text",), "hi"),
                    CallDone(0, "c1", "shout", {"text": "hi"}), StreamDone()])
    assert sched.claim("c1", spec=shout.conveyor_spec) == (True, "HI")
    [execution] = traced.wait_for("execute_tool shout")
    assert attrs(execution)["conveyor.claimed"] is True
    assert traced.open.open == {}


def test_instrument_twice_traces_once(traced: Traced, sched: Scheduler) -> None:
    instrument(tracer_provider=traced.provider)              # the fixture did it once already
    one_turn([])
    assert [s.name for s in traced.spans()] == ["chat conveyor", "execute_tool web_search"]


def test_instrument_again_switches_the_provider(traced: Traced, sched: Scheduler) -> None:
    other = Traced()
    instrument(tracer_provider=other.provider)
    one_turn([])
    assert traced.spans() == []
    assert [s.name for s in other.spans()] == ["chat conveyor", "execute_tool web_search"]


# -- ConveyorCallbackHandler on a model that is not ours --------------------------------------------
async def test_callback_handler_gives_a_chat_span_per_model_run(traced: Traced,
                                                                sched: Scheduler) -> None:
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI

    from conveyor_integrations.adapters.langchain import ConveyorCallbackHandler
    from tests.fake_openai_server import FakeOpenAIServer, tool_call_deltas

    first = tool_call_deltas("call_abc", "web_search", {"query": "weather in Paris"}, piece=3)
    first[-1]["finish_reason"] = "tool_calls"
    turns = [first, [{"role": "assistant", "content": ANSWER}, {"finish_reason": "stop"}]]
    log: list[str] = []
    search = make_search(log, is_async=True)
    handler = ConveyorCallbackHandler(tools=[search])
    tracer = traced.provider.get_tracer("tests")
    with FakeOpenAIServer(turns, delay_s=0.02) as server:
        llm = ChatOpenAI(base_url=server.base_url, api_key="x", model="fake", streaming=True,
                         callbacks=[handler])
        with tracer.start_as_current_span("invoke_agent"):
            out = await create_agent(llm, tools=[search]).ainvoke(
                {"messages": [HumanMessage("weather?")]})
    assert out["messages"][-1].content == ANSWER and log == ["weather in Paris"]

    [root] = traced.spans("invoke_agent")
    chats = traced.spans("chat fake")
    [execution] = traced.spans("execute_tool web_search")
    assert len(chats) == 2 and [parent_id(c) for c in chats] == [span_id(root)] * 2
    assert parent_id(execution) == span_id(chats[0])
    assert attrs(execution)["gen_ai.tool.call.id"] == "call_abc"
    assert attrs(execution)["conveyor.claimed"] is True
    assert attrs(chats[0])["gen_ai.response.finish_reasons"] == ("tool_calls",)
    [message] = json.loads(attrs(chats[0])["gen_ai.output.messages"])
    assert [p["id"] for p in message["parts"] if p["type"] == "tool_call"] == ["call_abc"]
    assert traced.open.open == {}
