"""Multi-turn prompts reuse the prefix cache: turn k+1's prompt starts with turn k's prompt and
the tokens the model generated (``TurnMemo``), and an edited message is rendered from its fields.

The rendering tests need no vLLM: the chat templates are rendered with jinja2 as in
``test_vllm_prompt``, the tokenizer is faked, and the messages are the ones the LangChain and
LlamaIndex adapters build from a ``Replay`` of the model's text. The last tests use the session's
one engine (``vllm_engine``, marked ``vllm``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from conveyor_integrations.backends import Replay
from conveyor_integrations.backends import bundled_model as bm
from conveyor_integrations.backends.base import ChatRequest
from conveyor_integrations.backends.vllm_engine import VLLMEngine
from conveyor_integrations.backends.vllm_prompt import RawText, hermes_messages
from conveyor_integrations.backends.vllm_turns import TurnMemo, message_key, raw_key
from tests.backends.test_vllm_prompt import SMOLLM2_TEMPLATE, _render

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
# what a model writes, and what the parser and LangChain make of it differently: surrounding
# whitespace, a newline between the text and the first call and between two calls, compact JSON
TURNS = [
    (' Let me check Paris first.  \n<tool_call>\n{"name": "get_weather", "arguments": '
     '{"city": "Paris"}}\n</tool_call>'),
    ('Now Zürich and Rome:\n<tool_call>\n{"name": "get_weather", "arguments": {"city": '
     '"Zürich"}}\n</tool_call>\n<tool_call>\n{"name":"get_weather","arguments":{"city":"Rome"}}'
     "\n</tool_call>"),
    "Sunny in Paris, cold in Zürich, hot in Rome.",
]
RESULTS = [["Paris: 24 C, sunny"], ["Zürich: 3 C, snow", "Rome: 31 C, clear"]]


END = "<|im_end|>"


class FakeTokenizer:
    """Canonical encoding: one id per character (its code point). The 'model' spells its own
    text with other ids (minus the code point), as a forced or sampled turn often does: both
    decode to the same text. ``2`` is ``<|im_end|>`` (a special token)."""

    all_special_ids = (2,)

    def __init__(self, template: str) -> None:
        self.template = template

    def apply_chat_template(self, messages: list[dict[str, Any]], tools: Any = None,
                            add_generation_prompt: bool = True, tokenize: bool = False) -> str:
        assert add_generation_prompt and not tokenize
        return _render(self.template, messages, tools)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids: list[int] = []
        for n, part in enumerate(text.split(END)):
            ids += ([2] if n else []) + [ord(c) for c in part]
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(("" if skip_special_tokens else END) if i == 2 else chr(abs(i))
                       for i in ids)


def generated_ids(text: str) -> list[int]:
    return [-ord(c) for c in text] + [2]


class FakeLLM:
    def __init__(self, tok: FakeTokenizer) -> None:
        self.tok = tok

    def get_tokenizer(self) -> FakeTokenizer:
        return self.tok


def fake_engine(template: str = SMOLLM2_TEMPLATE, rendering: str = "system") -> VLLMEngine:
    """A VLLMEngine whose prompt building runs on a fake tokenizer (no vLLM)."""
    engine = VLLMEngine()
    engine._engine = FakeLLM(FakeTokenizer(template))
    engine._tool_rendering = rendering
    return engine


def langchain_turn(text: str) -> Any:
    """The AIMessage that ChatConveyor makes of the model's ``text``."""
    from conveyor_integrations.adapters.langchain import ChatConveyor

    model = ChatConveyor(backend=Replay(text, tokens_per_s=1e6)).bind_tools(TOOLS)
    return model.invoke("hi")


def run_conversation(engine: VLLMEngine, to_request: Callable[[list[Any]], list[dict[str, Any]]],
                     history: list[Any], assistant: Callable[[str], Any],
                     tool: Callable[[str, str], Any]) -> list[tuple[list[int], list[int]]]:
    """Each turn: the prompt the engine builds, the ids the model 'generates' (remembered as
    the engine does after a turn), the assistant message back into the history, then results."""
    turns = []
    for k, text in enumerate(TURNS):
        request = ChatRequest(to_request(history), tools=TOOLS)
        prompt = engine._prompt_ids(request)
        gen = generated_ids(text)
        engine._remember(text, gen)
        turns.append((prompt, gen))
        msg = assistant(text)
        history.append(msg)
        for call_id, result in zip(call_ids(msg), RESULTS[k] if k < len(RESULTS) else [],
                                   strict=False):
            history.append(tool(result, call_id))
    return turns


def call_ids(msg: Any) -> list[str]:
    if hasattr(msg, "tool_calls"):
        return [c["id"] for c in msg.tool_calls]
    return [c["id"] for c in msg.additional_kwargs.get("tool_calls", [])]


def assert_prefix_extensions(turns: list[tuple[list[int], list[int]]]) -> None:
    for (prompt, gen), (next_prompt, _) in itertools.pairwise(turns):
        assert next_prompt[:len(prompt) + len(gen)] == prompt + gen


def langchain_history() -> tuple[list[Any], Callable[[list[Any]], list[dict[str, Any]]],
                                 Callable[[str, str], Any]]:
    from langchain_core.messages import (
        HumanMessage,
        SystemMessage,
        ToolMessage,
        convert_to_openai_messages,
    )

    history: list[Any] = [SystemMessage("You plan trips."), HumanMessage("Weather in 3 cities?")]
    return history, convert_to_openai_messages, lambda r, i: ToolMessage(r, tool_call_id=i)


# -- keys ----------------------------------------------------------------------------------------
def test_raw_key_reads_what_the_text_says() -> None:
    assert raw_key(TURNS[1]) == ("Now Zürich and Rome:\n\n", (
        ("get_weather", '{"city": "Zürich"}'), ("get_weather", '{"city": "Rome"}')))
    assert raw_key("just text ") == ("just text ", ())
    for broken in ('<tool_call>\n{"name": "f", "arguments": {', "<tool_call>{nope}</tool_call>",
                   '<tool_call>{"name": "f", "arguments": "{}"}</tool_call>',
                   '<tool_call>{"arguments": {}}</tool_call>'):
        assert raw_key(broken) is None


def test_message_key_ignores_spacing_key_order_and_escapes() -> None:
    def msg(args: Any) -> dict[str, Any]:
        return {"role": "assistant", "content": [{"type": "text", "text": "x"}],
                "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": args}}]}

    key = ("x", (("f", '{"a": 1, "b": "ü"}'),))
    assert message_key(msg('{"b":"\\u00fc","a":1}')) == key
    assert message_key(msg({"a": 1, "b": "ü"})) == key
    assert message_key(msg('{"a": true, "b": "ü"}')) != key      # true is not 1
    assert message_key(msg("not json")) is None


def test_adapters_messages_say_what_the_raw_text_says() -> None:
    from langchain_core.messages import convert_to_openai_messages

    for text in TURNS:
        (oai,) = convert_to_openai_messages([langchain_turn(text)])
        assert message_key(oai) == raw_key(text)


def test_llamaindex_messages_say_what_the_raw_text_says() -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.llms import ChatMessage

    from conveyor_integrations.adapters.llamaindex import ConveyorLLM
    from conveyor_integrations.adapters.llamaindex.convert import to_openai_messages

    for text in TURNS:
        llm = ConveyorLLM(backend=Replay(text, tokens_per_s=1e6))
        response = llm.chat([ChatMessage(role="user", content="hi")])
        (oai,) = to_openai_messages([response.message])
        assert message_key(oai) == raw_key(text)


# -- prompts -------------------------------------------------------------------------------------
def test_without_the_memo_the_rebuilt_history_leaves_the_previous_prompt() -> None:
    """The bug: rebuilt from its fields, the second assistant turn differs from the model's."""
    from langchain_core.messages import convert_to_openai_messages

    text = TURNS[1]
    before = [{"role": "user", "content": "hi"}]
    prompt = _render(SMOLLM2_TEMPLATE, hermes_messages(before, TOOLS))
    after = before + convert_to_openai_messages([langchain_turn(text)])
    rebuilt = _render(SMOLLM2_TEMPLATE, hermes_messages(after, TOOLS))
    assert not rebuilt.startswith(prompt + text)
    memo = TurnMemo()
    memo.add(text, None)
    fixed = _render(SMOLLM2_TEMPLATE, hermes_messages(after, TOOLS, memo_text(memo)))
    assert fixed.startswith(prompt + text + "<|im_end|>\n")


def memo_text(memo: TurnMemo) -> RawText:
    def raw_text(m: Any) -> str | None:
        hit = memo.get(m)
        return None if hit is None else hit[0]
    return raw_text


def test_langchain_history_extends_each_prompt_with_the_generated_tokens() -> None:
    engine = fake_engine()
    history, to_request, tool = langchain_history()
    turns = run_conversation(engine, to_request, history, langchain_turn, tool)
    assert_prefix_extensions(turns)
    assert len(engine._turns) == 3


def test_the_same_history_without_memo_diverges_inside_the_first_assistant_turn() -> None:
    engine = fake_engine()
    history, to_request, tool = langchain_history()
    engine._remember = lambda text, ids: None  # type: ignore[method-assign]
    (p1, g1), (p2, _), _ = run_conversation(engine, to_request, history, langchain_turn, tool)
    assert p2[:len(p1)] == p1 and p2[len(p1)] != g1[0]


def test_native_template_history_extends_each_prompt() -> None:
    engine = fake_engine(bm.TOOL_CHAT_TEMPLATE, rendering="native")
    history, to_request, tool = langchain_history()
    assert_prefix_extensions(run_conversation(engine, to_request, history, langchain_turn, tool))


def test_llamaindex_history_extends_each_prompt() -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.llms import ChatMessage

    from conveyor_integrations.adapters.llamaindex import ConveyorLLM
    from conveyor_integrations.adapters.llamaindex.convert import to_openai_messages

    def assistant(text: str) -> Any:
        llm = ConveyorLLM(backend=Replay(text, tokens_per_s=1e6))
        return llm.chat([ChatMessage(role="user", content="hi")]).message

    def tool(result: str, call_id: str) -> Any:
        return ChatMessage(role="tool", content=result, additional_kwargs={"tool_call_id": call_id})

    history = [ChatMessage(role="system", content="You plan trips."),
               ChatMessage(role="user", content="Weather in 3 cities?")]
    engine = fake_engine()
    assert_prefix_extensions(run_conversation(engine, to_openai_messages, history, assistant,
                                              tool))


def test_an_edited_call_is_rendered_from_its_fields_not_the_stale_text() -> None:
    from langchain_core.messages import AIMessage, convert_to_openai_messages

    text = TURNS[1]
    memo = TurnMemo()
    memo.add(text, generated_ids(text)[:-1])
    msg = langchain_turn(text)
    calls = [dict(c) for c in msg.tool_calls]
    calls[1]["args"] = {"city": "Oslo"}
    for edited in (AIMessage(content=msg.content, tool_calls=calls),
                   AIMessage(content="Only Zürich and Rome:", tool_calls=msg.tool_calls),
                   AIMessage(content=msg.content, tool_calls=msg.tool_calls[:1])):
        (oai,) = convert_to_openai_messages([edited])
        assert memo.get(oai) is None
        (out,) = hermes_messages([oai], [], memo_text(memo))
        assert out["content"] != text
        assert [json.loads(b.split("\n")[1])["arguments"] for b in
                out["content"].split("<tool_call>")[1:]] == [c["args"] for c in edited.tool_calls]
    assert "Oslo" in hermes_messages(convert_to_openai_messages(
        [AIMessage(content=msg.content, tool_calls=calls)]), [], memo_text(memo))[0]["content"]
    (unedited,) = convert_to_openai_messages([msg])
    assert hermes_messages([unedited], [], memo_text(memo))[0]["content"] == text


def test_the_engine_keeps_ids_only_when_they_spell_the_text() -> None:
    engine = fake_engine()
    text = TURNS[0]
    engine._remember(text, [-ord(c) for c in text + "<|stop|>"])  # a stop string: ids differ
    (oai,) = [{"role": "assistant", "content": raw_key(text)[0],  # type: ignore[index]
               "tool_calls": [{"function": {"name": "get_weather",
                                            "arguments": '{"city": "Paris"}'}}]}]
    assert engine._turns.get(oai) == (text, None)  # the text still comes back, not the ids
    engine._remember(text, generated_ids(text))
    assert engine._turns.get(oai) == (text, generated_ids(text)[:-1])
    engine._remember("plain answer", [1, 2])  # ids that do not spell it, and no calls: nothing
    assert engine._turns.get({"role": "assistant", "content": "plain answer"}) is None


def test_a_template_that_changes_the_text_gets_the_plain_encoding() -> None:
    memo = TurnMemo()
    text = TURNS[2]
    memo.add(text, generated_ids(text)[:-1])
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": text}]

    def render(raw_text: RawText) -> str:   # a template that upper-cases assistant turns
        msgs = hermes_messages(messages, [], raw_text)
        return "".join(m["role"] + ":" + (m["content"].upper() if m["role"] == "assistant"
                                          else m["content"]) for m in msgs)

    def encode(s: str) -> list[int]:
        return [ord(c) for c in s]

    assert memo.prompt_ids(messages, render, encode) == encode(render(lambda m: None))


def test_the_memo_forgets_the_least_recently_used_turns() -> None:
    memo = TurnMemo(max_size=40)
    memo.add("a" * 10, [1] * 10)
    memo.add("b" * 10, [1] * 10)
    assert memo.get({"role": "assistant", "content": "a" * 10}) is not None  # a is now recent
    memo.add("c" * 10, [1] * 10)
    assert len(memo) == 2
    assert memo.get({"role": "assistant", "content": "b" * 10}) is None
    assert memo.get({"role": "user", "content": "a" * 10}) is None  # assistant turns only


# -- the real engine -----------------------------------------------------------------------------
ENGINE_TURNS = [
    ('I will check the weather in Paris for you, then tell you what to pack for the trip.\n'
     '<tool_call>\n{"name":"get_weather","arguments":{"city":"Paris"}}\n</tool_call>'),
    "It is sunny in Paris: pack light clothes, sunglasses and a hat.",
]


def _forced(text: str) -> dict[str, Any]:
    return {"temperature": 0.0, "max_tokens": 256, "structured_outputs": {"choice": [text]}}


async def _run(engine: Any, request: ChatRequest) -> tuple[str, dict[str, Any]]:
    text, final = "", {}
    async for d in engine.stream(request):
        if isinstance(d, str):
            text += d
        else:
            final = d
    return text, final


@pytest.mark.vllm
async def test_engine_second_turn_reuses_the_first_turns_blocks(vllm_engine: Any) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage, convert_to_openai_messages

    from conveyor_integrations.adapters.langchain import ChatConveyor

    block = vllm_engine._engine.vllm_config.cache_config.block_size
    history: list[Any] = [HumanMessage("What should I pack for Paris? " * 8)]
    first = ChatConveyor(backend=vllm_engine, **_forced(ENGINE_TURNS[0])).bind_tools(TOOLS)
    msg = await first.ainvoke(history)
    request1 = ChatRequest(convert_to_openai_messages(history), tools=TOOLS)
    history += [msg, ToolMessage("Paris: 24 C, sunny", tool_call_id=msg.tool_calls[0]["id"])]
    request2 = ChatRequest(convert_to_openai_messages(history), tools=TOOLS,
                           sampling=_forced(ENGINE_TURNS[1]))
    hit = vllm_engine._turns.get(convert_to_openai_messages([msg])[0])
    assert hit is not None and hit[0] == ENGINE_TURNS[0] and hit[1] is not None
    p1 = vllm_engine._prompt_ids(request1)
    p2 = vllm_engine._prompt_ids(request2)
    assert p2[:len(p1) + len(hit[1])] == p1 + hit[1]
    previous = len(p1) + len(hit[1]) + 1          # + the end-of-turn token
    assert previous >= block

    text, final = await _run(vllm_engine, request2)
    assert text == ENGINE_TURNS[1]
    cached = final["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= min(previous, len(p2) - 1) // block * block

    await vllm_engine.reset_prefix_cache()
    again = ChatRequest(request2.messages, tools=TOOLS, sampling=request2.sampling)
    _, final = await _run(vllm_engine, again)
    assert final["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
