"""Qwen3-Coder XML tool calls (``qwen3_xml``): the chat template's rendering under any
tokenization, schema conversion, hostile input, and the same calls as vLLM's ``qwen3_coder``."""

from __future__ import annotations

import json
import pathlib
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from parsing_support import (
    chars,
    check_grammar,
    code_text,
    draw_cuts,
    feed_all,
    json_values,
    normalize,
    split,
)

from conveyor_integrations.events import (
    CallDone,
    CallMalformed,
    CallStarted,
    Event,
    FieldDone,
    Text,
    TextChunk,
)
from conveyor_integrations.parsing import Qwen3XmlParser, get_parser

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SCHEMAS: dict[str, dict[str, Any]] = {
    "python": {"type": "object", "properties": {"code": {"type": "string"},
                                                "timeout": {"type": "number"}}},
    "search": {"type": "object", "properties": {
        "query": {"type": "string"}, "k": {"type": "integer"},
        "filters": {"type": "array", "items": {"type": "string"}}}},
    "f": {"type": "object", "properties": {
        "s": {"type": "string"}, "n": {"type": "integer"}, "x": {"type": "number"},
        "b": {"type": "boolean"}, "o": {"type": "object"}, "a": {"type": "array"},
        "u": {"type": ["integer", "null"]},
        "e": {"anyOf": [{"type": "boolean"}, {"type": "object"}]}}},
}
# "extra" is in no schema: its value stays text

# -- the chat template's rendering -----------------------------------------------------------

TAG_BITS = ["\n", "\n\n", " ", "<", ">", "<parameter=x>", "</function>", "<tool_call>",
            "</tool_call>", "</param", "</parameter", "<function=f>", "&lt;", "null", "42"]
text_value = st.lists(st.one_of(st.text(chars, max_size=6), st.sampled_from(TAG_BITS)),
                      max_size=5).map("".join).filter(lambda s: "</parameter>" not in s)
# vLLM's parser also ends a value at </function> or at the next <parameter= (ours: text)
vllm_text_value = text_value.filter(lambda s: "</function>" not in s and "<parameter=" not in s)
json_object = st.dictionaries(st.text(chars, max_size=6), json_values, max_size=3)
json_array = st.lists(json_values, max_size=3)
finite = st.floats(allow_nan=False, allow_infinity=False)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "code": code_text, "timeout": finite, "query": text_value, "k": st.integers(-10**20, 10**20),
    "filters": st.lists(st.text(chars, max_size=5), max_size=3), "s": text_value,
    "n": st.integers(-10**20, 10**20), "x": finite, "b": st.booleans(), "o": json_object,
    "a": json_array, "u": st.none() | st.integers(), "e": st.booleans() | json_object,
    "extra": text_value,
}
PARAMS = {tool: [*schema["properties"], "extra"] for tool, schema in SCHEMAS.items()}
NAMES = st.sampled_from(sorted(SCHEMAS))
PROSE = st.lists(st.one_of(st.text(chars, max_size=4), st.sampled_from(
    ["<", "<tool_", "</tool_call>", "<function=f>", "<parameter=x>", "</parameter>", "\n"])),
    max_size=4).map("".join).filter(lambda s: "<tool_call>" not in s)


def render_value(value: Any, style: str) -> str:
    """The template: mappings and sequences ``| tojson``, others ``| string`` (newer templates
    write every non-string ``| tojson``)."""
    if isinstance(value, (dict, list)) or (style == "tojson" and not isinstance(value, str)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render(content: str, calls: list[tuple[str, dict[str, Any]]], style: str = "string",
           tight: bool = False) -> tuple[str, list[int], str]:
    """An assistant message as the Qwen3-Coder chat template renders it, where each
    ``</parameter>`` ends, and its text outside the calls. ``tight``: the variant that writes
    ``</parameter>`` with no newline after it."""
    out = outside = content
    ends: list[int] = []
    for i, (name, args) in enumerate(calls):
        sep = ("\n\n" if content.strip() else "") if i == 0 else "\n"
        out += sep + f"<tool_call>\n<function={name}>\n"
        outside += sep
        for key, value in args.items():
            out += f"<parameter={key}>\n{render_value(value, style)}\n</parameter>"
            ends.append(len(out))
            out += "" if tight else "\n"
        out += "</function>\n</tool_call>"
    return out, ends, outside


def draw_calls(data: st.DataObject, vllm_safe: bool = False) -> list[tuple[str, dict[str, Any]]]:
    calls = []
    for _ in range(data.draw(st.integers(0, 3))):
        name = data.draw(NAMES)
        keys = data.draw(st.lists(st.sampled_from(PARAMS[name]), unique=True, max_size=5))
        args = {}
        for k in keys:
            strategy = VALUES[k]
            if vllm_safe and strategy is text_value:
                strategy = vllm_text_value
            args[k] = data.draw(strategy)
        calls.append((name, args))
    return calls


def expected_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: json.loads(json.dumps(v)) if isinstance(v, (dict, list)) else v
            for k, v in args.items()}


def parser(unit: str = "line", **kw: Any) -> Qwen3XmlParser:
    streams = {"python": {"code": unit}, "f": {"s": unit, "n": unit}, "search": {"query": unit}}
    return Qwen3XmlParser(id_prefix="t", schemas=SCHEMAS, streams=streams, **kw)


def feed_tracked(p: Qwen3XmlParser, pieces: list[str]) -> list[tuple[int, Event]]:
    out = [(i, e) for i, piece in enumerate(pieces) for e in p.feed(piece)]
    return out + [(len(pieces), e) for e in p.close()]


@SETTINGS
@given(st.data(), st.sampled_from(["line", "statement", "raw"]))
def test_template_rendering_any_tokenization(data: st.DataObject, unit: str) -> None:
    content = data.draw(PROSE)
    calls = draw_calls(data)
    style = data.draw(st.sampled_from(["string", "tojson"]))
    # a value cannot hold its closing tag
    assume(all("</parameter>" not in render_value(v, style) for _, a in calls for v in a.values()))
    text, ends, outside = render(content, calls, style, data.draw(st.booleans()))
    tail = data.draw(st.sampled_from(["", "\n", " Done.", "<tool_c"]))
    text, outside = text + tail, outside + tail
    whole = feed_all(parser(unit), [text])
    check_grammar(whole)
    done = [e for e in whole if isinstance(e, CallDone)]
    assert [(e.name, e.args) for e in done] == [(n, expected_args(a)) for n, a in calls]
    assert [e.index for e in done] == list(range(len(calls)))
    assert not any(isinstance(e, CallMalformed) for e in whole)
    assert "".join(e.text for e in whole if isinstance(e, Text)) == outside
    fields = [e for e in whole if isinstance(e, FieldDone)]
    for e in whole:                # streamed: only string fields, and they join to the value
        if isinstance(e, TextChunk):
            assert e.path in {("code",), ("s",), ("query",)}
    for f in fields:
        if f.path in {("code",), ("s",), ("query",)} and f.value:
            assert any(isinstance(e, TextChunk) and e.index == f.index and e.path == f.path
                       for e in whole)
    for _ in range(5):
        pieces = split(text, draw_cuts(data, text))
        tracked = feed_tracked(parser(unit), pieces)
        events = [e for _, e in tracked]
        check_grammar(events)
        assert normalize(events) == normalize(whole), pieces
        # FieldDone in the very delta that completes its </parameter>
        starts = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
        where = [i for i, e in tracked if isinstance(e, FieldDone)]
        assert len(where) == len(ends)
        for i, end in zip(where, ends, strict=True):
            assert starts[i] < end <= starts[i] + len(pieces[i]), (i, end, pieces)


def test_documented_example() -> None:
    text = ("text before<tool_call>\n<function=python>\n<parameter=code>\nfor i in range(2):\n"
            "    print(i)\nx = 1\n</parameter>\n<parameter=timeout>\n42\n</parameter>\n"
            "</function>\n</tool_call>")
    evs = feed_all(parser("statement"), list(text))
    check_grammar(evs)
    assert normalize(evs) == [
        Text("text before"), CallStarted(0, "call_t_0", "python"),
        TextChunk(0, ("code",), "for i in range(2):\n    print(i)\nx = 1"),
        FieldDone(0, ("code",), "for i in range(2):\n    print(i)\nx = 1"),
        FieldDone(0, ("timeout",), 42),
        CallDone(0, "call_t_0", "python", {"code": "for i in range(2):\n    print(i)\nx = 1",
                                            "timeout": 42}),
        evs[-1]]
    pieces = [e.text for e in evs if isinstance(e, TextChunk)]
    assert pieces == ["for i in range(2):\n    print(i)\n", "x = 1"]   # statement by statement


# -- schema conversion -------------------------------------------------------------------------

def one_call(value: str, schema: Any = None, **kw: Any) -> list[Event]:
    schemas = {"f": {"properties": {"v": schema}}} if schema is not None else None
    text = f"<tool_call>\n<function=f>\n<parameter=v>\n{value}\n</parameter>\n</function>"
    return feed_all(Qwen3XmlParser(id_prefix="t", schemas=schemas, **kw), [text + "</tool_call>"])


def value_of(value: str, schema: Any = None) -> Any:
    evs = one_call(value, schema)
    check_grammar(evs)
    done = [e for e in evs if isinstance(e, CallDone)]
    bad = [e.reason for e in evs if isinstance(e, CallMalformed)]
    return done[0].args["v"] if done else ("malformed", bad[0])


@pytest.mark.parametrize("raw,schema,expected", [
    ("42", {"type": "integer"}, 42), (" -7 ", {"type": "integer"}, -7),
    ("4.5", {"type": "number"}, 4.5), ("1e+16", {"type": "number"}, 1e16),
    ("3", {"type": "number"}, 3), ("True", {"type": "boolean"}, True),
    ("false", {"type": "boolean"}, False), ("null", {"type": "null"}, None),
    ("None", {"type": ["integer", "null"]}, None), ("5", {"type": ["integer", "null"]}, 5),
    ('{"a": [1, null]}', {"type": "object"}, {"a": [1, None]}),
    ("{'a': (1, 2), 'b': None}", {"type": "object"}, {"a": [1, 2], "b": None}),
    ("[1, 'x', True]", {"type": "array"}, [1, "x", True]),
    ("true", {"anyOf": [{"type": "boolean"}, {"type": "object"}]}, True),
    ("42", {"type": "string"}, "42"), ("  spaced  ", {"type": "string"}, "  spaced  "),
    ("42", {"type": ["string", "integer"]}, 42), ("abc", {"type": ["integer", "string"]}, "abc"),
    ("42", {"type": "int"}, "42"),                  # an unknown type name: a string
    ("42", {"description": "no type"}, "42"),
    ("\nline\n", {"type": "string"}, "\nline\n"),   # only one newline each side is markup
])
def test_schema_conversion(raw: str, schema: Any, expected: Any) -> None:
    got = value_of(raw, schema)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("raw,schema", [
    ("4.5", {"type": "integer"}), ("abc", {"type": "number"}), ("inf", {"type": "number"}),
    ("nan", {"type": "number"}), ("yes", {"type": "boolean"}), ("[1]", {"type": "object"}),
    ("{1, 2}", {"type": "array"}), ("{'a': b'x'}", {"type": "object"}),
    ("[1e999]", {"type": "array"}), ("{not json", {"type": "object"}),
    ("", {"type": "integer"}), ("1" * 5000, {"type": "integer"}), ("x", {"type": "null"}),
    ("[" * 5000 + "]" * 5000, {"type": "array"}), ("__import__('os')", {"type": "object"}),
])
def test_value_that_does_not_fit_its_schema_is_malformed(raw: str, schema: Any) -> None:
    got = value_of(raw, schema)
    assert got[0] == "malformed" and "parameter 'v'" in got[1] and "is not a valid" in got[1]


@pytest.mark.parametrize("raw", ["42", "true", "null", '{"a": 1}', "[1, 2]", "3.5"])
def test_without_schema_values_stay_strings(raw: str) -> None:
    assert value_of(raw) == raw
    evs = feed_all(Qwen3XmlParser(schemas={"other": {"properties": {}}}), [
        f"<tool_call><function=f><parameter=v>{raw}</parameter></function></tool_call>"])
    assert [e.args for e in evs if isinstance(e, CallDone)] == [{"v": raw}]


def test_streams_only_fields_that_stay_text() -> None:
    streams = {"f": {"v": "raw"}}
    for schema, chunks in [({"type": "string"}, ["12"]), (None, ["12"]),
                           ({"type": "integer"}, []), ({"type": ["string", "null"]}, [])]:
        evs = one_call("12", schema, streams=streams)
        assert [e.text for e in evs if isinstance(e, TextChunk)] == chunks


def test_registry_passes_schemas() -> None:
    p = get_parser("qwen3_xml", schemas={"f": {"properties": {"v": {"type": "integer"}}}})
    evs = feed_all(p, ["<tool_call><function=f><parameter=v>\n7\n</parameter></function>"])
    assert [e.args for e in evs if isinstance(e, CallDone)] == [{"v": 7}]


# -- hostile input -------------------------------------------------------------------------

FULL = render("Let me check.", [("f", {"s": "a <b> & c\n", "n": 3}),
                                ("python", {"code": "x = 1\nprint(x)\n"})])[0]


def test_truncated_at_every_prefix() -> None:
    first_done = FULL.index("</function>") + len("</function>")
    second_done = FULL.rindex("</function>") + len("</function>")
    for cut in range(len(FULL) + 1):
        prefix = FULL[:cut]
        for pieces in ([prefix], list(prefix)):
            evs = feed_all(parser(), pieces)
            check_grammar(evs)
            done = {e.index for e in evs if isinstance(e, CallDone)}
            assert done == {i for i, end in enumerate((first_done, second_done)) if cut >= end}
            started = {e.index for e in evs if isinstance(e, CallStarted)}
            bad = {e.index for e in evs if isinstance(e, CallMalformed)}
            assert started - done <= bad, prefix


@pytest.mark.parametrize("text", [
    ("a <tool_ box> <tool_call <tool_callx> </tool_call> <function=f> <parameter=x>1</parameter>"
     " </function> <tool"),
    "<function=f>\n<parameter=a>\n1\n</parameter>\n</function>",  # no <tool_call>: text
    "<", "</tool_call>", "<tool_call", "x <tool_call\n",
])
def test_look_alikes_are_text(text: str) -> None:
    for pieces in ([text], list(text)):
        evs = feed_all(parser(), pieces)
        assert all(isinstance(e, Text) for e in evs[:-1]), evs
        assert "".join(e.text for e in evs[:-1]) == text  # type: ignore[union-attr]


DUPLICATE = ("<tool_call>\n<function=f>\n<parameter=n>\n1\n</parameter>\n<parameter=n>\n2\n"
             "</parameter>\n</function>\n</tool_call>")
GOOD = "<tool_call>\n<function=f>\n<parameter=n>\n1\n</parameter>\n</function>\n</tool_call>"


@pytest.mark.parametrize("bad,reason", [
    ("<tool_call>\n<function=rm>\n<parameter=p>\n/\n</parameter>\n</function>\n</tool_call>",
     "unknown tool 'rm'"),
    (DUPLICATE, "duplicate parameter 'n'"),
    ("<tool_call>\n<parameter=n>\n1\n</parameter>\n</tool_call>", "parameter outside a function"),
    ("<tool_call>\n</tool_call>", "empty tool call"),
    ("<tool_call>\n<function=f>\n<function=g>\n</function>\n</tool_call>", "unexpected text"),
    ("<tool_call>\n<function=f>\n<param=n>\n1\n</param>\n</function>\n</tool_call>",
     "unexpected text"),
    ("<tool_call>\n<function=f>\nstray words\n</function>\n</tool_call>", "unexpected text"),
    ("<tool_call>\nhello</tool_call>", "unexpected text"),
    ("<tool_call>\n<function=f\nx>\n</function>\n</tool_call>", "bad function name"),
    ("<tool_call>\n<function=>\n</function>\n</tool_call>", "bad function name"),
    ("<tool_call>\n<function=" + "f" * 300 + ">\n</function>\n</tool_call>", "bad function name"),
    ("<tool_call>\n<function=f>\n<parameter=a<b>\n1\n</parameter>\n</function>\n</tool_call>",
     "bad parameter name"),
    ("<tool_call>\n<function=f>\n<parameter=n>\nNaN\n</parameter>\n</function>\n</tool_call>",
     "is not a valid integer"),
])
def test_malformed_calls_then_recovery(bad: str, reason: str) -> None:
    text = "before " + bad + "\nbetween " + GOOD + " after"
    kw: dict[str, Any] = {"tools": ["f", "g"]}
    whole = feed_all(parser(**kw), [text])
    for pieces in ([text], list(text)):
        evs = feed_all(parser(**kw), pieces)
        check_grammar(evs)
        assert normalize(evs) == normalize(whole)
        malformed = [e for e in evs if isinstance(e, CallMalformed)]
        assert len(malformed) == 1 and reason in malformed[0].reason, malformed
        assert [e.args for e in evs if isinstance(e, CallDone)] == [{"n": 1}]
        texts = "".join(e.text for e in evs if isinstance(e, Text))
        assert texts.startswith("before ") and texts.endswith(" after")


@pytest.mark.parametrize("text,reason", [
    ("<tool_call>\n", "no <function=NAME>"), ("<tool_call>\n<function=f", "no <function=NAME>"),
    ("<tool_call>\n<function=f>\n", "no </function>"),
    ("<tool_call>\n<function=f>\n<parameter=s>\nabc", "unterminated parameter 's'"),
    ("<tool_call>\n<function=f>\n<parameter=s>\nabc\n</parameter", "unterminated parameter"),
])
def test_unterminated_at_close(text: str, reason: str) -> None:
    evs = feed_all(parser(), [text])
    check_grammar(evs)
    assert [e.reason for e in evs if isinstance(e, CallMalformed)] == [
        next(e.reason for e in evs if isinstance(e, CallMalformed))]
    assert reason in next(e.reason for e in evs if isinstance(e, CallMalformed))


def test_forgiving_framing() -> None:
    """What vLLM also accepts: two functions in one <tool_call>, </tool_call> for a missing
    </function>, a missing </tool_call> before the next call or text."""
    text = ("<tool_call><function=f><parameter=n>1</parameter></function>"
            "<function=f><parameter=n>2</parameter></tool_call>"
            "<tool_call><function=f><parameter=n>3</parameter></function>"
            "<tool_call><function=f></function> and text")
    evs = feed_all(parser(), list(text))
    check_grammar(evs)
    assert [e.args for e in evs if isinstance(e, CallDone)] == [{"n": 1}, {"n": 2}, {"n": 3}, {}]
    assert normalize([e for e in evs if isinstance(e, Text)]) == [Text("and text")]


def test_only_the_closing_tag_ends_a_value() -> None:
    value = "x </function> <parameter=y>1</param> <tool_call> </tool_call>"
    text = f"<tool_call>\n<function=f>\n<parameter=s>\n{value}\n</parameter>\n</function>"
    evs = feed_all(parser(), list(text))
    assert [e.args for e in evs if isinstance(e, CallDone)] == [{"s": value}]


def test_argument_limit() -> None:
    p = parser("raw", max_arg_chars=1000)
    evs = feed_all(p, ["<tool_call>\n<function=f>\n<parameter=s>\n", "x" * 600, "y" * 600,
                       "\n</parameter>\n</function>\n</tool_call>after"])
    check_grammar(evs)
    assert isinstance(evs[-3], CallMalformed) and "exceed 1000" in evs[-3].reason
    assert sum(len(e.text) for e in evs if isinstance(e, TextChunk)) < 1000
    assert evs[-2] == Text("after")


CHUNK = "abcdefg\n" * (64 * 1024 // 8)


def big_stream(n_chunks: int) -> Iterator[str]:
    yield "<tool_call>\n<function=python>\n<parameter=code>\n"
    for i in range(n_chunks):   # a fresh string each time, so that keeping it costs memory
        yield CHUNK[:-9] + f"{i:08d}\n"
    yield "</parameter>\n</function>\n</tool_call>bye"


def test_50mb_value_is_not_buffered() -> None:
    p = parser("line")
    kinds: dict[str, int] = {}
    tracemalloc.start()
    try:
        for delta in big_stream(50 * 1024 * 1024 // len(CHUNK)):
            for e in p.feed(delta):
                kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        for e in p.close():
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kinds.get("CallMalformed") == 1 and "CallDone" not in kinds, kinds
    assert kinds["Text"] == 1 and kinds["TextChunk"] > 100_000
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_huge_value_within_limit_and_linear_time() -> None:
    def per_char(n_lines: int) -> float:
        text = ("<tool_call>\n<function=python>\n<parameter=code>\n"
                + "".join(f"x{i} = '<b>' < {i}\n" for i in range(n_lines))
                + "</parameter>\n</function>\n</tool_call>")
        best = float("inf")
        for _ in range(3):
            p = parser("statement")
            t0 = time.perf_counter()
            evs = [e for i in range(0, len(text), 4) for e in p.feed(text[i:i + 4])] + p.close()
            best = min(best, (time.perf_counter() - t0) / len(text))
        assert [type(e).__name__ for e in evs[-2:]] == ["CallDone", "StreamDone"]
        return best

    small, big = per_char(500), per_char(20_000)
    assert big < 4 * small, (small, big)


VOCAB = ["<tool_call>", "</tool_call>", "<function=f>", "<function=python>", "<function=rm>",
         "<function=", "</function>", "<parameter=n>", "<parameter=s>", "<parameter=code>",
         "<parameter=", "</parameter>", "<", ">", "\n", " ", "x", "42", "{", "}", "</param",
         "<tool_", "True", "null", "[1, 2]", "if x:\n", "    y\n", "f>"]


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_garbage(data: st.DataObject) -> None:
    text = "".join(data.draw(st.lists(st.sampled_from(VOCAB), max_size=30)))
    unit = data.draw(st.sampled_from(["line", "statement", "raw"]))
    kw: dict[str, Any] = {"tools": ["python", "f", "search"]}
    whole = feed_all(parser(unit, **kw), [text])
    check_grammar(whole)
    pieces = split(text, draw_cuts(data, text))
    events = feed_all(parser(unit, **kw), pieces)
    check_grammar(events)
    assert normalize(events) == normalize(whole), pieces


# -- against vLLM's own qwen3_coder parser ------------------------------------------------------

@pytest.fixture(scope="module")
def vllm_qwen3(bundled_model: pathlib.Path) -> Any:
    """vLLM's ``qwen3_coder`` tool parser (it reads the tokenizer's vocabulary: the bundled
    SmolLM2's will do, the Qwen tags then being plain text to it) and a request with tools."""
    try:
        from transformers import AutoTokenizer
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.tool_parsers import ToolParserManager
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
        pytest.skip(f"vllm is not importable ({type(e).__name__}: {e})")
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model))
    cls = ToolParserManager.get_tool_parser("qwen3_coder")
    tools = [{"type": "function", "function": {"name": n, "parameters": s}}
             for n, s in SCHEMAS.items()]
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                                    tools=tools)
    return cls, tokenizer, request


@pytest.mark.vllm
@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_same_calls_as_vllm(vllm_qwen3: Any, data: st.DataObject) -> None:
    cls, tokenizer, request = vllm_qwen3
    calls = draw_calls(data, vllm_safe=True)
    assume(all("</parameter>" not in render_value(v, "tojson") for _, a in calls
               for v in a.values()))
    text, _, _ = render(data.draw(st.sampled_from(["", "Sure.", "Let me look.\n"])), calls,
                     "tojson", data.draw(st.booleans()))
    ours = [(e.name, e.args) for e in feed_all(parser(), [text]) if isinstance(e, CallDone)]
    assert ours == [(n, expected_args(a)) for n, a in calls]
    info = cls(tokenizer, request.tools).extract_tool_calls(text, request)
    theirs = [(c.function.name, json.loads(c.function.arguments))
              for c in (info.tool_calls if info.tools_called else [])]
    assert theirs == ours
