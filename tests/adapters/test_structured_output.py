"""``ChatConveyor.with_structured_output``: each method and schema kind, over Replay transcripts
(bare JSON text, JSON in a code fence or after prose, tool calls), include_raw, streaming, the
errors, and what each backend is asked for (a forced call, ``structured_outputs``,
``response_format``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pytest

pytest.importorskip("langchain_core")
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage
from pydantic import BaseModel, Field
from pydantic.v1 import BaseModel as BaseModelV1
from typing_extensions import TypedDict

from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.adapters.langchain.structured import backend_constraint
from conveyor_integrations.backends import OpenAICompatible, Replay, VLLMEngine
from conveyor_integrations.scheduler import Scheduler
from tests.fake_openai_server import FakeOpenAIServer, tool_call_deltas


class Joke(BaseModel):
    """A joke to tell."""

    setup: str = Field(description="the question")
    punchline: str = Field(description="the answer")


class JokeDict(TypedDict):
    """A joke to tell."""

    setup: Annotated[str, ..., "the question"]
    punchline: Annotated[str, ..., "the answer"]


class JokeV1(BaseModelV1):
    """A joke to tell."""

    setup: str
    punchline: str


JOKE = {"setup": "Why did the cat sit on the keyboard?", "punchline": "To keep an eye on the mouse."}
JSON = json.dumps(JOKE)
SCHEMAS: dict[str, Any] = {"pydantic": Joke, "typeddict": JokeDict,
                           "json_schema": Joke.model_json_schema()}
TEXTS = {"bare": JSON, "fenced": f"Here you go:\n```json\n{JSON}\n```\nEnjoy!",
         "after_prose": f"Sure! {JSON}", "padded": f"\n  {JSON}  \n"}
METHODS = ["function_calling", "json_mode", "json_schema"]


def tool_call(name: str) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {JSON}}}</tool_call>'


def model(*turns: str, **kw: Any) -> ChatConveyor:
    return ChatConveyor(backend=Replay(list(turns), tokens_per_s=None, cycle=True), **kw)


def expected(kind: str) -> Any:
    return Joke(**JOKE) if kind == "pydantic" else JOKE


@pytest.mark.parametrize("text", sorted(TEXTS))
@pytest.mark.parametrize("kind", sorted(SCHEMAS))
@pytest.mark.parametrize("method", METHODS)
def test_text_answers(sched: Scheduler, method: str, kind: str, text: str) -> None:
    chat = model(TEXTS[text]).with_structured_output(SCHEMAS[kind], method=method)
    assert chat.invoke("A joke, as JSON.") == expected(kind)
    chunks = list(chat.stream("A joke, as JSON."))
    assert chunks[-1] == expected(kind)
    assert all(type(c) is type(expected(kind)) for c in chunks)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
async def test_async_answers(sched: Scheduler, kind: str) -> None:
    for method in METHODS:
        chat = model(JSON).with_structured_output(SCHEMAS[kind], method=method)
        assert await chat.ainvoke("A joke.") == expected(kind)
        chunks = [c async for c in chat.astream("A joke.")]
        assert chunks[-1] == expected(kind)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_function_calling_reads_the_call(sched: Scheduler, kind: str) -> None:
    name = {"pydantic": "Joke", "typeddict": "JokeDict", "json_schema": "Joke"}[kind]
    backend = Replay(tool_call(name), tokens_per_s=None, cycle=True)
    chat = ChatConveyor(backend=backend).with_structured_output(SCHEMAS[kind])
    assert chat.invoke("A joke.") == expected(kind)
    assert list(chat.stream("A joke."))[-1] == expected(kind)
    request = backend.requests[0]
    assert [t["function"]["name"] for t in request.tools] == [name]
    assert request.tool_choice == "required"      # the call is forced


def test_function_calling_strict_marks_the_schema(sched: Scheduler) -> None:
    backend = Replay(tool_call("Joke"), tokens_per_s=None)
    ChatConveyor(backend=backend).with_structured_output(Joke, strict=True).invoke("A joke.")
    assert backend.requests[0].tools[0]["function"]["strict"] is True


@pytest.mark.parametrize("method", ["json_mode", "json_schema"])
def test_json_methods_bind_no_tools(sched: Scheduler, method: str) -> None:
    backend = Replay(JSON, tokens_per_s=None)
    ChatConveyor(backend=backend).with_structured_output(Joke, method=method).invoke("A joke.")
    assert list(backend.requests[0].tools) == [] and backend.requests[0].tool_choice is None


def test_pydantic_v1_schema(sched: Scheduler) -> None:
    for method in METHODS:
        chat = model(JSON).with_structured_output(JokeV1, method=method)
        result = chat.invoke("A joke.")
        assert isinstance(result, JokeV1) and result.dict() == JOKE


def test_json_mode_without_schema(sched: Scheduler) -> None:
    assert model(JSON).with_structured_output(None, method="json_mode").invoke("?") == JOKE


def test_streamed_dict_grows_and_object_comes_once(sched: Scheduler) -> None:
    dicts = list(model(JSON).with_structured_output(JokeDict, method="json_mode").stream("?"))
    assert len(dicts) > 1 and dicts[-1] == JOKE
    assert all(isinstance(d, dict) and d for d in dicts)
    assert len({json.dumps(d) for d in dicts}) == len(dicts)        # each one is new
    objects = list(model(JSON).with_structured_output(Joke, method="json_mode").stream("?"))
    assert objects == [Joke(**JOKE)]


@pytest.mark.parametrize("method", METHODS)
def test_include_raw(sched: Scheduler, method: str) -> None:
    out = model(JSON).with_structured_output(Joke, method=method, include_raw=True).invoke("?")
    assert set(out) == {"raw", "parsed", "parsing_error"}
    assert isinstance(out["raw"], AIMessage)
    assert out["parsed"] == Joke(**JOKE) and out["parsing_error"] is None


@pytest.mark.parametrize("method", METHODS)
def test_include_raw_keeps_the_error(sched: Scheduler, method: str) -> None:
    chat = model("Hello!").with_structured_output(Joke, method=method, include_raw=True)
    out = chat.invoke("?")
    assert out["raw"].content == "Hello!" and out["parsed"] is None
    assert isinstance(out["parsing_error"], OutputParserException)


BAD = {"no_json": "Hello!", "truncated": '{"setup": "Why", "punchline": "Beca',
       "not_an_object": "[1, 2]", "broken": '{"setup": "Why",, }'}


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("method", METHODS)
def test_unparsable_answer_raises(sched: Scheduler, method: str, bad: str) -> None:
    for schema in (Joke, JokeDict):
        chat = model(BAD[bad]).with_structured_output(schema, method=method)
        with pytest.raises(OutputParserException, match=f"method='{method}'"):
            chat.invoke("?")
        with pytest.raises(OutputParserException, match=f"method='{method}'"):
            list(chat.stream("?"))


def test_an_answer_cut_at_the_token_limit_says_so(sched: Scheduler) -> None:
    backend = Replay([[{"content": JSON[:30]}, {"finish_reason": "length"}]], tokens_per_s=None)
    chat = ChatConveyor(backend=backend).with_structured_output(Joke, method="json_schema")
    with pytest.raises(OutputParserException, match="finish_reason='length'"):
        chat.invoke("?")


def test_object_that_does_not_fit_raises(sched: Scheduler) -> None:
    chat = model('{"setup": "Why?"}').with_structured_output(Joke, method="json_schema")
    with pytest.raises(OutputParserException, match="does not fit Joke"):
        chat.invoke("?")


def test_wrong_call_raises(sched: Scheduler) -> None:
    chat = model(tool_call("Riddle")).with_structured_output(Joke)
    with pytest.raises(OutputParserException, match="called Riddle, not Joke"):
        chat.invoke("?")
    chat = model(tool_call("Riddle")).with_structured_output(Joke, method="json_mode")
    with pytest.raises(OutputParserException, match="instead of answering with JSON text"):
        chat.invoke("?")


def test_bad_arguments_raise_at_once() -> None:
    m = model(JSON)
    with pytest.raises(ValueError, match="unknown method 'xml'"):
        m.with_structured_output(Joke, method="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a schema"):
        m.with_structured_output(None, method="json_schema")
    with pytest.raises(ValueError, match="strict"):
        m.with_structured_output(Joke, method="json_mode", strict=True)


class _Options(BaseCallbackHandler):
    def __init__(self) -> None:
        self.options: list[Any] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.options.append(kwargs.get("options"))


@pytest.mark.parametrize("method", METHODS)
def test_tracing_sees_the_format(sched: Scheduler, method: str) -> None:
    seen = _Options()
    model(JSON).with_structured_output(JokeDict, method=method).invoke(
        "?", config={"callbacks": [seen]})
    fmt = seen.options[0]["ls_structured_output_format"]
    assert fmt["kwargs"]["method"] == method
    assert set(fmt["schema"]["properties"]) == {"setup", "punchline"}


def test_what_each_backend_is_asked() -> None:
    engine = VLLMEngine.__new__(VLLMEngine)            # an instance, no engine started
    server = OpenAICompatible("http://127.0.0.1:9/v1", model="m")
    replay = Replay(JSON)
    schema = backend_constraint(engine, "json_schema", Joke, None)["structured_outputs"]["json"]
    assert set(schema["properties"]) == {"setup", "punchline"}
    assert backend_constraint(engine, "json_mode", Joke, None) == {
        "structured_outputs": {"json_object": True}}
    assert backend_constraint(server, "json_mode", None, None) == {
        "response_format": {"type": "json_object"}}
    fmt = backend_constraint(server, "json_schema", Joke, True)["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Joke"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False
    for backend in (engine, server, replay):
        assert backend_constraint(backend, "function_calling", Joke, None) == {}
    assert backend_constraint(replay, "json_schema", Joke, None) == {}


@pytest.mark.parametrize("method", METHODS)
def test_openai_compatible_server_gets_the_format(sched: Scheduler, method: str) -> None:
    turn = (tool_call_deltas("c1", "Joke", JOKE) if method == "function_calling"
            else [{"content": JSON[:10]}, {"content": JSON[10:]}])
    with FakeOpenAIServer([[*turn, {"finish_reason": "stop"}]]) as srv:
        backend = OpenAICompatible(srv.base_url, model="fake")
        chat = ChatConveyor(backend=backend).with_structured_output(Joke, method=method)
        assert chat.invoke("A joke.") == Joke(**JOKE)
    body = srv.requests[0]
    if method == "function_calling":
        assert body["tool_choice"] == "required" and "response_format" not in body
    elif method == "json_mode":
        assert body["response_format"] == {"type": "json_object"}
    else:
        assert body["response_format"]["json_schema"]["name"] == "Joke"
        assert "tools" not in body
