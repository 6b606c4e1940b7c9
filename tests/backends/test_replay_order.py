"""A batch's answers follow its inputs over a ``Replay``, whatever order the concurrent streams
start in: ``ChatConveyor.batch``/``abatch`` reserve the next transcripts for their inputs'
requests (``Replay.reserve``), and each request gets its own when its stream begins."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

pytest.importorskip("langchain_core")
from langchain_core.callbacks import BaseCallbackHandler

from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import BackendError, ChatRequest, Replay
from conveyor_integrations.scheduler import Scheduler

WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]


async def text(replay: Replay, request: ChatRequest) -> str:
    return "".join([str(d) async for d in replay.stream(request)])


# -- Replay alone ---------------------------------------------------------------------------------
def test_unreserved_streams_take_transcripts_as_they_begin() -> None:
    r = Replay(WORDS[:3], tokens_per_s=None)
    assert [asyncio.run(text(r, ChatRequest([]))) for _ in range(3)] == WORDS[:3]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_reserved_requests_get_their_transcripts_in_any_start_order(n: int) -> None:
    r = Replay(WORDS, tokens_per_s=None)
    requests = [ChatRequest([]) for _ in range(n)]
    r.reserve([q.request_id for q in requests])
    answers = {q.request_id: asyncio.run(text(r, q)) for q in reversed(requests)}
    assert [answers[q.request_id] for q in requests] == WORDS[:n]
    assert [q.request_id for q in r.requests] == [q.request_id for q in reversed(requests)]
    assert asyncio.run(text(r, ChatRequest([]))) == WORDS[n]     # the next one after the batch


async def test_reserved_streams_running_together() -> None:
    r = Replay(WORDS[:4], tokens_per_s=2000)
    requests = [ChatRequest([]) for _ in range(4)]
    r.reserve([q.request_id for q in requests])
    answers = await asyncio.gather(*(text(r, q) for q in reversed(requests)))
    assert answers == list(reversed(WORDS[:4]))


def test_an_unused_reservation_keeps_its_transcript() -> None:
    r = Replay(WORDS[:3], tokens_per_s=None)
    a, b = ChatRequest([]), ChatRequest([])
    r.reserve([a.request_id, b.request_id])
    assert asyncio.run(text(r, b)) == "two"          # a never streams
    assert asyncio.run(text(r, ChatRequest([]))) == "three"


def test_reserving_past_the_end() -> None:
    r = Replay(WORDS[:2], tokens_per_s=None)
    requests = [ChatRequest([]) for _ in range(3)]
    r.reserve([q.request_id for q in requests])
    with pytest.raises(BackendError, match="no transcript left for call 3"):
        asyncio.run(text(r, requests[2]))
    assert asyncio.run(text(r, requests[1])) == "two"
    cycling = Replay(WORDS[:2], tokens_per_s=None, cycle=True)
    requests = [ChatRequest([]) for _ in range(3)]
    cycling.reserve([q.request_id for q in requests])
    assert [asyncio.run(text(cycling, q)) for q in reversed(requests)] == ["one", "two", "one"]


# -- through ChatConveyor -------------------------------------------------------------------------
SIZES = [2, 3, 5, 8, 11]


def chat(n: int, **kw: Any) -> ChatConveyor:
    return ChatConveyor(backend=Replay(WORDS[:n], **kw))


@pytest.mark.parametrize("n", SIZES)
def test_batch_answers_in_input_order(sched: Scheduler, n: int) -> None:
    for _ in range(3):                   # the threads' start order differs from run to run
        answers = chat(n, tokens_per_s=None).batch([f"q{i}" for i in range(n)])
        assert [a.content for a in answers] == WORDS[:n]


@pytest.mark.parametrize("n", SIZES)
async def test_abatch_answers_in_input_order(sched: Scheduler, n: int) -> None:
    for _ in range(3):
        answers = await chat(n, tokens_per_s=None).abatch([f"q{i}" for i in range(n)])
        assert [a.content for a in answers] == WORDS[:n]


class _LaterFirst(BaseCallbackHandler):
    """Holds input ``q<i>`` back ``(n - i) * 20`` ms before its request is made, so the streams
    begin in reverse input order (the handler is synchronous: under ``abatch`` it runs in an
    executor thread too)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        i = int(messages[0][-1].content[1:])
        time.sleep((self.n - i) * 0.02)


@pytest.mark.parametrize("n", [3, 6])
def test_batch_when_streams_begin_in_reverse(sched: Scheduler, n: int) -> None:
    model = chat(n, tokens_per_s=None)
    answers = model.batch([f"q{i}" for i in range(n)], config={"callbacks": [_LaterFirst(n)]})
    assert [a.content for a in answers] == WORDS[:n]
    first = model.backend.requests[0].messages[-1]["content"]
    assert first == f"q{n - 1}"                 # the last input's stream began first


@pytest.mark.parametrize("n", [3, 6])
async def test_abatch_when_streams_begin_in_reverse(sched: Scheduler, n: int) -> None:
    model = chat(n, tokens_per_s=None)
    answers = await model.abatch([f"q{i}" for i in range(n)],
                                 config={"callbacks": [_LaterFirst(n)]})
    assert [a.content for a in answers] == WORDS[:n]
    assert model.backend.requests[0].messages[-1]["content"] == f"q{n - 1}"


def test_batch_with_limited_concurrency(sched: Scheduler) -> None:
    model = chat(5, tokens_per_s=400)
    answers = model.batch([f"q{i}" for i in range(5)], config={"max_concurrency": 2})
    assert [a.content for a in answers] == WORDS[:5]
    assert len(model.backend.requests) == 5


def test_batch_then_invoke_continue_in_order(sched: Scheduler) -> None:
    model = chat(7, tokens_per_s=None)
    assert model.invoke("first").content == "one"
    assert [a.content for a in model.batch(["a", "b", "c"])] == ["two", "three", "four"]
    assert model.invoke("next").content == "five"
    assert [a.content for a in model.batch(["d", "e"])] == ["six", "seven"]


def test_batch_with_return_exceptions_past_the_end(sched: Scheduler) -> None:
    answers = chat(2, tokens_per_s=None).batch(["a", "b", "c"], return_exceptions=True)
    assert [getattr(a, "content", None) for a in answers[:2]] == ["one", "two"]
    assert isinstance(answers[2], BackendError)


def test_batch_through_bindings_and_chains(sched: Scheduler) -> None:
    from langchain_core.output_parsers import StrOutputParser

    model = chat(4, tokens_per_s=None)
    assert (model.bind(temperature=0.0) | StrOutputParser()).batch(list("abcd")) == WORDS[:4]


def test_batch_keeps_given_run_ids(sched: Scheduler) -> None:
    import uuid

    ids = [uuid.uuid4() for _ in range(3)]
    model = chat(3, tokens_per_s=None)
    answers = model.batch(list("abc"), [{"run_id": i} for i in ids])
    assert [a.content for a in answers] == WORDS[:3]
    assert all(str(i) in (a.id or "") for a, i in zip(answers, ids, strict=True))
    assert not model._planned              # nothing left behind
