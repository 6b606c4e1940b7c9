"""The framework events of early executions: "the tool started", "its result is ready".

LangChain: custom events ``conveyor_tool_started`` / ``conveyor_tool_result`` from
``ChatConveyor``'s run (``astream_events`` shows them, callback handlers get them) and, for a
result that came after the message ended, from the tool's run. LlamaIndex:
``ConveyorToolStartedEvent`` / ``ConveyorToolResultEvent`` through the instrumentation
dispatcher. The backend is a ``Replay`` that, once the call is decoded, waits for the tool's
body to begin before it decodes the rest of the message, so "the tool started before the message
ended" holds whatever the machine's speed; a "late" tool waits, in turn, until the framework has
seen the end of the message, so its result is told from the tool's side.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

pytest.importorskip("langchain")
pytest.importorskip("llama_index.core")
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage
from langchain_core.tools import StructuredTool
from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.tools import FunctionTool

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor, custom_events
from conveyor_integrations.adapters.llamaindex import (
    ConveyorLLM,
    ConveyorToolResultEvent,
    ConveyorToolStartedEvent,
    ConveyorTurnEndEvent,
    instrumentation,
)
from conveyor_integrations.adapters.tool_events import RESULT, STARTED, ToolEvents
from conveyor_integrations.backends import ChatRequest, Delta, Replay
from conveyor_integrations.scheduler import Scheduler

CALL = ('<tool_call>{"name": "web_search", "arguments": {"query": "weather in Paris"}}'
        '</tool_call>\nI am reading the results now and will answer in a moment.')
ANSWER = "It is sunny in Paris."
WAIT_S = 10.0
"""The most anything here waits for the other side (never reached when it works)."""
STARTED_KEYS = {"tool", "call_id", "request_id", "index", "at", "elapsed_s"}
RESULT_KEYS = STARTED_KEYS - {"at"} | {"status", "early", "seconds", "reason"}


class Gated:
    """``Replay([CALL, ANSWER])`` that, once the call is decoded, waits until ``started``."""

    def __init__(self, started: threading.Event) -> None:
        self.replay = Replay([CALL, ANSWER], tokens_per_s=200)
        self.default_tool_format = self.replay.default_tool_format
        self.started = started

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        text, gated = "", False
        async for delta in self.replay.stream(request):
            yield delta
            text += delta if isinstance(delta, str) else ""
            if not gated and "</tool_call>" in text:
                gated = True
                deadline = time.monotonic() + WAIT_S
                while not self.started.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.002)

    async def aclose(self) -> None:
        await self.replay.aclose()


class Search:
    """The tool's body: tells when it began; a late one returns once ``release`` is set."""

    def __init__(self, late: bool) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.late = late
        self.log: list[str] = []

    def __call__(self, query: str) -> str:
        self.started.set()
        self.log.append(query)
        if self.late:
            assert self.release.wait(WAIT_S), "the framework never saw the message's end"
        return f"results for {query}: sunny"


def check_data(started: dict[str, Any], result: dict[str, Any], call_id: str) -> None:
    assert set(started) == STARTED_KEYS and set(result) == RESULT_KEYS
    assert started["tool"] == result["tool"] == "web_search"
    assert started["call_id"] == result["call_id"] == call_id
    assert started["request_id"] == result["request_id"] and started["index"] == 0
    assert result["status"] == "ok" and result["early"] is True and result["reason"] is None
    assert result["seconds"] >= 0 and result["elapsed_s"] >= started["elapsed_s"] >= 0


# -- LangChain ------------------------------------------------------------------------------------
QUESTION = {"messages": [HumanMessage("What is the weather in Paris?")]}


def lc_agent(body: Search, *, is_async: bool = False) -> Any:
    if is_async:
        async def web_search(query: str) -> str:
            """Search the web."""
            return body(query) if not body.late else await asyncio.to_thread(body, query)

        tool = StructuredTool.from_function(coroutine=web_search)
    else:
        def web_search(query: str) -> str:
            """Search the web."""
            return body(query)

        tool = StructuredTool.from_function(func=web_search)
    search = partial_tool(tool, start_on=["query"])
    return create_agent(ChatConveyor(backend=Gated(body.started)), tools=[search])


@pytest.mark.parametrize("late", [False, True], ids=["result_in_turn", "result_after_turn"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync_tool", "async_tool"])
async def test_astream_events_show_started_before_the_turn_ends(
        is_async: bool, late: bool, sched: Scheduler) -> None:
    body = Search(late)
    agent = lc_agent(body, is_async=is_async)
    seen: list[tuple[str, str, Any]] = []
    async for ev in agent.astream_events(QUESTION, version="v2"):
        seen.append((ev["event"], ev["name"], ev["data"]))
        if ev["event"] == "on_chat_model_end":
            body.release.set()                       # a late tool ends after this
    kinds = [(e, n) for e, n, _ in seen]

    started = [i for i, k in enumerate(kinds) if k == ("on_custom_event", STARTED)]
    results = [i for i, k in enumerate(kinds) if k == ("on_custom_event", RESULT)]
    turn_end = kinds.index(("on_chat_model_end", "ChatConveyor"))
    tool_end = kinds.index(("on_tool_end", "web_search"))
    assert len(started) == 1 and len(results) == 1           # each told once
    assert started[0] < turn_end                             # while the message was decoded
    assert started[0] < results[0] < tool_end                # ready before the tool's end
    if late:
        assert turn_end < results[0]                         # told from the tool's run
    call_id = seen[turn_end][2]["output"].tool_calls[0]["id"]
    check_data(seen[started[0]][2], seen[results[0]][2], call_id)
    assert body.log == ["weather in Paris"]                 # and it ran once


class Recorder(BaseCallbackHandler):
    """A handler that takes custom events, and the ends of model and tool runs."""

    def __init__(self, release: threading.Event | None = None) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.release = release

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.seen.append((name, data))

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.seen.append(("llm_end", response.generations[0][0].message))
        if self.release is not None:
            self.release.set()

    def on_tool_end(self, output: Any, **kwargs: Any) -> None:
        self.seen.append(("tool_end", output))


@pytest.mark.parametrize("late", [False, True], ids=["result_in_turn", "result_after_turn"])
@pytest.mark.parametrize("how", ["invoke", "stream"])
def test_a_callback_handler_gets_the_events(how: str, late: bool, sched: Scheduler) -> None:
    """``invoke`` runs the model with its run manager; ``stream`` (messages mode) streams the
    model, which LangChain then runs without one: the events come from the agent's node."""
    body = Search(late)
    agent = lc_agent(body)
    handler = Recorder(body.release)
    config: Any = {"callbacks": [handler]}
    if how == "invoke":
        out = agent.invoke(QUESTION, config=config)
        assert out["messages"][-1].content == ANSWER
    else:
        chunks = list(agent.stream(QUESTION, config=config, stream_mode="messages"))
        assert ANSWER in "".join(str(m.content) for m, _ in chunks)
    names = [name for name, _ in handler.seen]
    assert names.count(STARTED) == 1 and names.count(RESULT) == 1
    turn_end, tool_end = names.index("llm_end"), names.index("tool_end")
    assert names.index(STARTED) < turn_end
    assert names.index(STARTED) < names.index(RESULT) < tool_end
    if late:
        assert turn_end < names.index(RESULT)
    call_id = handler.seen[turn_end][1].tool_calls[0]["id"]
    check_data(handler.seen[names.index(STARTED)][1], handler.seen[names.index(RESULT)][1],
               call_id)


class Counting(ToolEvents):
    made = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).made += 1


class EndsOnly(BaseCallbackHandler):
    """Takes no custom events (does not override ``on_custom_event``)."""

    def __init__(self) -> None:
        self.ends = 0

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.ends += 1


class Ignoring(Recorder):
    ignore_custom_event = True


@pytest.mark.parametrize("handler", [EndsOnly, Ignoring, None])
def test_nothing_is_watched_without_a_handler_taking_custom_events(
        handler: type[BaseCallbackHandler] | None, sched: Scheduler,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(custom_events, "ToolEvents", Counting)
    Counting.made = 0
    body = Search(late=False)
    agent = lc_agent(body)
    h = handler() if handler is not None else None
    out = agent.invoke(QUESTION, config={"callbacks": [h]} if h is not None else {})
    first = out["messages"][1]
    assert first.response_metadata["conveyor"]["calls"][0]["early"] is True   # still early
    assert Counting.made == 0                                # but no turn was watched
    if isinstance(h, Recorder):
        assert [name for name, _ in h.seen if name in (STARTED, RESULT)] == []
    # a handler that takes them: each of the two turns is watched
    lc_agent(Search(late=False)).invoke(QUESTION, config={"callbacks": [Recorder()]})
    assert Counting.made == 2


# -- LlamaIndex -----------------------------------------------------------------------------------
OURS = (ConveyorToolStartedEvent, ConveyorToolResultEvent, ConveyorTurnEndEvent)


class EventRecorder(BaseEventHandler):
    events: list[Any] = Field(default_factory=list)
    _release: threading.Event | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "EventRecorder"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, OURS):
            self.events.append(event)
            if isinstance(event, ConveyorTurnEndEvent) and self._release is not None:
                self._release.set()


@pytest.fixture
def recorder() -> Iterator[EventRecorder]:
    """An event handler on the root dispatcher, for the test only."""
    root = get_dispatcher()
    handler = EventRecorder(events=[])
    root.add_event_handler(handler)
    try:
        yield handler
    finally:
        root.event_handlers.remove(handler)


def li_agent(body: Search, streaming: bool) -> FunctionAgent:
    def web_search(query: str) -> str:
        """Search the web."""
        return body(query)

    search = partial_tool(FunctionTool.from_defaults(fn=web_search), start_on=["query"])
    return FunctionAgent(tools=[search], llm=ConveyorLLM(backend=Gated(body.started)),
                         streaming=streaming)


@pytest.mark.parametrize("late", [False, True], ids=["result_in_turn", "result_after_turn"])
@pytest.mark.parametrize("streaming", [True, False])
async def test_llamaindex_events(streaming: bool, late: bool, sched: Scheduler,
                                 recorder: EventRecorder) -> None:
    body = Search(late)
    recorder._release = body.release
    handler = li_agent(body, streaming).run(user_msg="What is the weather in Paris?")
    results = [ev async for ev in handler.stream_events() if isinstance(ev, ToolCallResult)]
    assert str(await handler) == ANSWER
    assert [r.tool_output.content for r in results] == ["results for weather in Paris: sunny"]

    kinds = [type(e) for e in recorder.events]
    assert kinds.count(ConveyorToolStartedEvent) == 1
    assert kinds.count(ConveyorToolResultEvent) == 1
    started = kinds.index(ConveyorToolStartedEvent)
    result = kinds.index(ConveyorToolResultEvent)
    turn_end = kinds.index(ConveyorTurnEndEvent)
    assert started < turn_end                                # while the message was decoded
    assert started < result < len(kinds) - 1                # before the next turn's end
    if late:
        assert turn_end < result                             # told from the tool's call
    first_turn: ConveyorTurnEndEvent = recorder.events[turn_end]
    call_id = first_turn.calls[0]["call_id"]
    s, r = recorder.events[started], recorder.events[result]
    check_data({k: getattr(s, k) for k in STARTED_KEYS}, {k: getattr(r, k) for k in RESULT_KEYS},
               call_id)
    assert s.request_id == first_turn.request_id
    assert body.log == ["weather in Paris"]


def _someone_listens() -> bool:
    return instrumentation.watch() is not None


async def test_llamaindex_watches_nothing_without_a_handler(
        sched: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
    if _someone_listens():
        pytest.skip("an event handler outside this test listens on the dispatcher")
    monkeypatch.setattr(instrumentation, "ToolEvents", Counting)
    Counting.made = 0
    body = Search(late=False)
    handler = li_agent(body, streaming=True).run(user_msg="What is the weather in Paris?")
    assert str(await handler) == ANSWER
    assert body.log == ["weather in Paris"] and Counting.made == 0
