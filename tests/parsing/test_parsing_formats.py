"""Unit tests of each wire format and of the registry."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from parsing_support import check_grammar, feed_all, normalize

from conveyor_integrations.events import (
    CallDone,
    CallMalformed,
    CallStarted,
    Event,
    FieldDone,
    ItemDone,
    StreamDone,
    Text,
    TextChunk,
)
from conveyor_integrations.parsing import (
    PARSERS,
    FencedCodeParser,
    HermesParser,
    Llama3JsonParser,
    MistralParser,
    OpenAIDeltaParser,
    PlanParser,
    ToolCallParser,
    get_parser,
)


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Text))


# -- registry ------------------------------------------------------------------------------

def test_registry() -> None:
    assert set(PARSERS) == {"openai", "hermes", "llama3_json", "mistral", "fenced_code", "plan",
                            "pythonic", "qwen3_xml", "harmony", "deepseek_v3", "glm45",
                            "kimi_k2"}
    for name in PARSERS:
        p = get_parser(name)
        assert isinstance(p, ToolCallParser)
        assert p.close() == [StreamDone()]
        assert p.close() == [] and p.feed("x") == []
    with pytest.raises(ValueError, match="hermes.*llama3_json"):
        get_parser("nope")
    with pytest.raises(ValueError):
        get_parser("hermes", streams={"t": {"f": "word"}})


def test_random_id_prefix_is_per_parser() -> None:
    ids = []
    for _ in range(2):
        evs = HermesParser().feed('<tool_call>{"name": "f", "arguments": {}}</tool_call>')
        ids.append(evs[0].id)  # type: ignore[union-attr]
    assert ids[0] != ids[1]
    assert all(re.fullmatch(r"call_[0-9a-f]{8}_0", i) for i in ids)


# -- hermes --------------------------------------------------------------------------------

def test_hermes_basic_and_eager_text() -> None:
    p = HermesParser(id_prefix="t")
    assert p.feed("Hello <") == [Text("Hello ")]
    assert p.feed("tool_call>") == []
    evs = p.feed('{"name": "search", "arguments": {"q": "a", "k": [1')
    assert evs == [CallStarted(0, "call_t_0", "search"), FieldDone(0, ("q",), "a")]
    assert p.feed("]}}") == [ItemDone(0, ("k",), 0, 1), FieldDone(0, ("k",), [1])]
    assert p.feed("\n</tool_call>\nok") == [
        CallDone(0, "call_t_0", "search", {"q": "a", "k": [1]}), Text("\nok")]
    assert p.close() == [StreamDone()]


def test_hermes_name_after_arguments_is_buffered() -> None:
    p = HermesParser(id_prefix="t", streams={"python": {"code": "line"}})
    evs = p.feed('<tool_call>{"parameters": {"code": "a\\nb\\n", "x": 1}')
    assert evs == []
    evs = p.feed(', "name": "python"}</tool_call>')
    assert evs == [CallStarted(0, "call_t_0", "python"),
                   TextChunk(0, ("code",), "a\n"), TextChunk(0, ("code",), "b\n"),
                   FieldDone(0, ("code",), "a\nb\n"), FieldDone(0, ("x",), 1),
                   CallDone(0, "call_t_0", "python", {"code": "a\nb\n", "x": 1})]


def test_hermes_streams_statements_as_decoded() -> None:
    p = HermesParser(id_prefix="t", streams={"python": {"code": "statement"}})
    out = p.feed('<tool_call>{"name": "python", "arguments": {"code": "x = 1\\nfor i in y:\\n')
    assert out[-1] == TextChunk(0, ("code",), "x = 1\n")
    assert p.feed("    pass\\n") == []
    assert p.feed("z = 2\\n") == [TextChunk(0, ("code",), "for i in y:\n    pass\n"),
                                   TextChunk(0, ("code",), "z = 2\n")]


def test_hermes_fake_tags_are_text() -> None:
    p = HermesParser(id_prefix="t")
    evs = feed_all(p, ["a <tool_", "box> b <tool_call", "x> </tool_call> <"])
    assert kinds(evs) == ["Text"] * len(evs[:-1]) + ["StreamDone"]
    assert text_of(evs) == "a <tool_box> b <tool_callx> </tool_call> <"


def test_hermes_unknown_tool_skipped_cleanly() -> None:
    p = HermesParser(id_prefix="t", tools=["ok"])
    evs = feed_all(p, ['<tool_call>{"name": "rm", "arguments": {"path": "/"}}</tool_call>',
                       'x<tool_call>{"name": "ok", "arguments": {}}</tool_call>'])
    assert evs == [CallMalformed(0, "call_t_0", "rm", "unknown tool 'rm'"), Text("x"),
                   CallStarted(1, "call_t_1", "ok"), CallDone(1, "call_t_1", "ok", {}),
                   StreamDone()]


@pytest.mark.parametrize("body,reason", [
    ('{"name": "f", "arguments": {"a": 1}}', "missing </tool_call>"),
    ('{"name": "f", "arguments": {"a": ', "truncated"),
    ('{"name": "f", "arguments": {"a": 1}} </tool_call', "missing </tool_call>"),
    ('{"name": "f", "arguments": [1]}</tool_call>', "must be a JSON object"),
    ('{"name": 3, "arguments": {}}</tool_call>', "name must be a string"),
    ('{"arguments": {}}</tool_call>', "missing tool name"),
    ('{"name": "f", "arguments": {}}} </tool_call>', "unexpected text"),
    ('not json</tool_call>', "expected a JSON object"),
    ('{"name": "f", "arguments": {"a": "\\q"}}</tool_call>', "invalid escape"),
])
def test_hermes_malformed(body: str, reason: str) -> None:
    tail = " after" if body.endswith("</tool_call>") else ""
    evs = feed_all(HermesParser(id_prefix="t"), ["<tool_call>" + body + tail])
    check_grammar(evs)
    bad = [e for e in evs if isinstance(e, CallMalformed)]
    assert len(bad) == 1 and reason in bad[0].reason, bad
    assert not any(isinstance(e, CallDone) for e in evs)


def test_hermes_forgotten_close_tag_does_not_eat_the_next_call() -> None:
    for sep in ["", "\n"]:
        evs = feed_all(HermesParser(id_prefix="t"),
                       ['<tool_call>{"name": "a", "arguments": {}}' + sep,
                        '<tool_call>{"name": "b", "arguments": {"x": "<tool_call>"}}</tool_call>'])
        check_grammar(evs)
        assert [(type(e).__name__, e.index) for e in evs if isinstance(e, (CallDone, CallMalformed))
                ] == [("CallMalformed", 0), ("CallDone", 1)]
    evs = feed_all(HermesParser(id_prefix="t"),
                   ['<tool_call>{"name": "a", "arguments": {"x": tru}}\n',
                    '<tool_call>{"name": "b", "arguments": {}}</tool_call>'])
    assert [type(e).__name__ for e in evs if isinstance(e, (CallDone, CallMalformed))] == [
        "CallMalformed", "CallDone"]


# -- openai --------------------------------------------------------------------------------

def tc(index: int, args: str | None = None, name: str | None = None,
       id: str | None = None) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "id": id, "type": "function",
                            "function": {"name": name, "arguments": args}}]}


def test_openai_fragments_and_index_change() -> None:
    p = OpenAIDeltaParser(id_prefix="t")
    assert p.feed({"role": "assistant", "content": "Let me"}) == [Text("Let me")]
    assert p.feed(tc(0, "", "search", "srv1")) == [CallStarted(0, "srv1", "search")]
    assert p.feed(tc(0, '{"q": "x"')) == [FieldDone(0, ("q",), "x")]
    assert p.feed(tc(0, "}")) == []
    assert p.feed(tc(1, None, "now")) == [CallDone(0, "srv1", "search", {"q": "x"}),
                                           CallStarted(1, "call_t_1", "now")]
    assert p.close() == [CallDone(1, "call_t_1", "now", {}), StreamDone()]


def test_openai_attribute_objects_and_plain_strings() -> None:
    p = OpenAIDeltaParser(id_prefix="t")
    fn = SimpleNamespace(name="f", arguments='{"a": 1}')
    call = SimpleNamespace(index=0, id="c", function=fn)
    delta = SimpleNamespace(content=None, tool_calls=[call])
    assert feed_all(p, ["hi", delta]) == [Text("hi"), CallStarted(0, "c", "f"),
                                         FieldDone(0, ("a",), 1),
                                         CallDone(0, "c", "f", {"a": 1}), StreamDone()]


def test_openai_arguments_before_name_are_buffered() -> None:
    p = OpenAIDeltaParser(id_prefix="t", streams={"f": {"s": "raw"}})
    assert p.feed(tc(0, '{"s": "a')) == []
    evs = p.feed(tc(0, 'b", "n": 1}', "f")) + p.close()
    assert normalize(evs) == [
        CallStarted(0, "call_t_0", "f"), TextChunk(0, ("s",), "ab"), FieldDone(0, ("s",), "ab"),
        FieldDone(0, ("n",), 1), CallDone(0, "call_t_0", "f", {"s": "ab", "n": 1}), StreamDone()]


def test_text_formats_take_dict_deltas() -> None:
    evs = feed_all(HermesParser(id_prefix="t"),
                   [{"role": "assistant", "content": "a<tool"}, {"content": None},
                    {"content": '_call>{"name": "f", "arguments": {}}</tool_call>'}])
    assert kinds(evs) == ["Text", "CallStarted", "CallDone", "StreamDone"]


def test_openai_problems() -> None:
    p = OpenAIDeltaParser(id_prefix="t", tools=["f"])
    evs = feed_all(p, [tc(0, '{"a": 1}'), tc(1, "{", "rm"), tc(1, "}"), tc(2, '{"a": 1} x', "f"),
                       tc(3, '{"a": ', "f")])
    check_grammar(evs)
    assert [(e.index, e.reason) for e in evs if isinstance(e, CallMalformed)] == [
        (0, "missing function name"), (1, "unknown tool 'rm'"),
        (2, "unexpected text after the arguments JSON"), (3, "truncated arguments JSON")]


# -- llama3 --------------------------------------------------------------------------------

def test_llama3_plain_text_and_calls() -> None:
    assert feed_all(Llama3JsonParser(), ["Sure", ", {x}"]) == [Text("Sure"), Text(", {x}"),
                                                               StreamDone()]
    evs = feed_all(Llama3JsonParser(id_prefix="t"),
                   [" <|python", '_tag|>{"name": "a", "parameters": {"x": 1}};\n',
                    '{"name": "b", "arguments": {}} and then text'])
    assert [e for e in evs if isinstance(e, CallDone)] == [
        CallDone(0, "call_t_0", "a", {"x": 1}), CallDone(1, "call_t_1", "b", {})]
    assert text_of(evs) == "and then text"
    assert feed_all(Llama3JsonParser(), ["<|python_t", "ug|>"]) == [Text("<|python_tug|>"),
                                                                    StreamDone()]


def test_llama3_recovers_after_a_bad_call() -> None:
    evs = feed_all(Llama3JsonParser(id_prefix="t", tools=["b"]),
                   ['{"name": "a", "parameters": {"s": "}]\\"", "n": [1, 2]}}; ',
                    '{"name": "b", "parameters": {"v": 01}};',
                    '{"name": "b", "parameters": {"v": 1}}'])
    check_grammar(evs)
    assert [type(e).__name__ for e in evs if isinstance(e, (CallDone, CallMalformed))] == [
        "CallMalformed", "CallMalformed", "CallDone"]


# -- mistral -------------------------------------------------------------------------------

def test_mistral_forms() -> None:
    evs = feed_all(MistralParser(id_prefix="t"),
                   ["I'll call. [TOOL_", 'CALLS] [{"name": "a", "arguments": {"x": 1}}, ',
                    '{"name": "b", "arguments": {}}] done'])
    assert [e for e in evs if isinstance(e, CallDone)] == [
        CallDone(0, "call_t_0", "a", {"x": 1}), CallDone(1, "call_t_1", "b", {})]
    assert text_of(evs) == "I'll call.  done"
    evs = feed_all(MistralParser(id_prefix="t"),
                   ['[TOOL_CALLS]get_w[CALL_ID]abc123XYZ[ARGS]{"c": "P"}[TOOL_CALLS]h[ARGS]{}'])
    assert [e for e in evs if isinstance(e, CallDone)] == [
        CallDone(0, "abc123XYZ", "get_w", {"c": "P"}), CallDone(1, "call_t_1", "h", {})]


def test_mistral_forms_vllm_also_accepts() -> None:
    evs = feed_all(MistralParser(id_prefix="t"),
                   ['Ok [TOOL_CALLS]{"name": "a", "arguments": {"x": 1}} then'])
    check_grammar(evs)
    assert [e for e in evs if isinstance(e, CallDone)] == [CallDone(0, "call_t_0", "a", {"x": 1})]
    assert text_of(evs) == "Ok  then"
    for pieces in (['[TOOL_CALLS]get_w{"c": "P"}[TOOL_CALLS]h {}'],
                   ["[TOOL_CALLS]get_", "w", ' {"c"', ': "P"}[TOOL_CALLS]h', " ", "{}"]):
        evs = feed_all(MistralParser(id_prefix="t"), pieces)
        check_grammar(evs)
        assert [e for e in evs if isinstance(e, CallDone)] == [
            CallDone(0, "call_t_0", "get_w", {"c": "P"}), CallDone(1, "call_t_1", "h", {})]
        assert any(isinstance(e, FieldDone) and e.path == ("c",) for e in evs)


def test_mistral_malformed() -> None:
    for text in ["[TOOL_CALLS][oops]", "[TOOL_CALLS]", "[TOOL_CALLS] na me[ARGS]{}",
                 '[TOOL_CALLS][{"name": "a", "arguments": {']:
        evs = feed_all(MistralParser(id_prefix="t"), [text])
        check_grammar(evs)
        assert any(isinstance(e, CallMalformed) for e in evs), text
    assert feed_all(MistralParser(), ["[TOOL_CALL", "X]"]) == [Text("[TOOL_CALLX]"),
                                                               StreamDone()]


# -- fenced code ---------------------------------------------------------------------------

def test_fenced_streams_statements() -> None:
    p = FencedCodeParser(id_prefix="t")
    assert p.feed("Here:\n``") == [Text("Here:\n")]
    assert p.feed("`py\nimport os\nfor x in y:\n") == [CallStarted(0, "call_t_0", "python"),
                                                      TextChunk(0, ("code",), "import os\n")]
    assert p.feed("    f(x)\n```") == []
    code = "import os\nfor x in y:\n    f(x)\n"
    assert p.feed("\nAfter") == [TextChunk(0, ("code",), "for x in y:\n    f(x)\n"),
                                 FieldDone(0, ("code",), code),
                                 CallDone(0, "call_t_0", "python", {"code": code}),
                                 Text("After")]


def test_fenced_other_languages_nesting_and_eof() -> None:
    text = "```js\n```python\nx\n```\n````python\n```\ny = 1\n````"
    evs = feed_all(FencedCodeParser(id_prefix="t", unit="line"), [text])
    assert text_of(evs) == "```js\n```python\nx\n```\n"
    assert [e for e in evs if isinstance(e, CallDone)] == [
        CallDone(0, "call_t_0", "python", {"code": "```\ny = 1\n"})]
    evs = feed_all(FencedCodeParser(id_prefix="t", unit="raw"), ["```python\nx = 1\n"])
    assert isinstance(evs[-2], CallMalformed) and "unterminated" in evs[-2].reason
    evs = feed_all(FencedCodeParser(tools=["other"]), ["```python\nx\n```\n"])
    assert kinds(evs) == ["CallMalformed", "StreamDone"]


# -- plan ----------------------------------------------------------------------------------

def test_plan_calls_deps_and_join() -> None:
    p = PlanParser(id_prefix="t", params={"search": ["query", "k"]})
    assert p.feed("Thought: go\n1. sea") == [Text("Thought: go\n")]
    assert p.feed('rch("x", 3') == [CallStarted(0, "call_t_0", "search")]
    evs = p.feed(')\n2. math("${1} * 2", opts={"a": [1.5, None]})\n')
    assert evs == [FieldDone(0, ("query",), "x"), FieldDone(0, ("k",), 3),
                   CallDone(0, "call_t_0", "search", {"query": "x", "k": 3}),
                   CallStarted(1, "call_t_1", "math"),
                   ItemDone(1, ("args",), 0, "${1} * 2"), FieldDone(1, ("args",), ["${1} * 2"]),
                   ItemDone(1, ("opts", "a"), 0, 1.5), ItemDone(1, ("opts", "a"), 1, None),
                   FieldDone(1, ("opts", "a"), [1.5, None]),
                   FieldDone(1, ("opts",), {"a": [1.5, None]}),
                   CallDone(1, "call_t_1", "math",
                            {"args": ["${1} * 2"], "opts": {"a": [1.5, None]}}, (0,))]
    evs = feed_all(p, ["3. join()\n4. search('late')\n"])
    assert kinds(evs) == ["Text", "Text", "StreamDone"]
    assert text_of(evs) == "3. join()\n4. search('late')\n"


@pytest.mark.parametrize("line,reason", [
    ('1. f("$2")', "not an earlier step"),
    ("1. f(x)", "only literal"),
    ("1. f(1) + 2", "single call"),
    ("1. f(*a)", "only literal"),
    ("1. f(1, 2, 3)", "at most 2"),
    ("1. f(1, a=2)", "given twice"),
    ("1. f({1: 2})", "keys must be strings"),
    ("1. f(", "invalid call"),
])
def test_plan_malformed(line: str, reason: str) -> None:
    evs = feed_all(PlanParser(id_prefix="t", params={"f": ["a", "b"]}), [line])
    check_grammar(evs)
    assert kinds(evs) == ["CallStarted", "CallMalformed", "StreamDone"]
    assert reason in evs[1].reason  # type: ignore[union-attr]


def test_plan_unknown_tool_and_duplicate_step() -> None:
    evs = feed_all(PlanParser(id_prefix="t", tools=["f"]), ["1. g(1)\n1. f(1)\n1. f(2)\n"])
    check_grammar(evs)
    assert [(type(e).__name__, e.index) for e in evs if isinstance(e, (CallDone, CallMalformed))
            ] == [("CallMalformed", 0), ("CallDone", 1), ("CallMalformed", 2)]


def test_openai_deltas_with_calls_left_in_the_text() -> None:
    """Calls the server parsed and calls it left in the text: one numbering, distinct ids."""
    p = OpenAIDeltaParser(id_prefix="d", text_parser=HermesParser(id_prefix="t"))
    served = {"tool_calls": [{"index": 0, "id": "srv", "function": {
        "name": "f", "arguments": '{"a": 1}'}}]}
    evs = feed_all(p, [served, {"content": "Then <tool_"},
                       {"content": 'call>{"name": "g", "arguments": {"b": 2}}</tool_call> end'},
                       {"content": "<tool_call>{bad"}])
    done = sorted((e.index, e.id, e.name, e.args) for e in evs if isinstance(e, CallDone))
    assert done == [(0, "srv", "f", {"a": 1}), (1, "call_t_0", "g", {"b": 2})]
    bad = [e for e in evs if isinstance(e, CallMalformed)]
    assert [e.index for e in bad] == [2] and "string key" in bad[0].reason
    assert "".join(e.text for e in evs if isinstance(e, Text)) == "Then  end"
    assert p.text_calls == 2
    check_grammar(evs)
