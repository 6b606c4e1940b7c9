"""GLM-4.5/4.6/4.7 tool calls (``glm45``): the chat templates' rendering (rendered with jinja2
as transformers renders chat templates) under any tokenization, schema conversion, hostile
input, and the same calls, no later, as vLLM's own ``glm45``/``glm47`` parser."""

from __future__ import annotations

import codecs
import json
import pathlib
import random
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment
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
from conveyor_integrations.parsing.glm45 import Glm45Parser

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
    "ns.get_weather-v2": {"type": "object", "properties": {"city": {"type": "string"}}},
}
# "raw" and "ключ" are in no schema: their values stay the text the template wrote

# -- the chat templates ----------------------------------------------------------------------

def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    """transformers' ``tojson`` filter for chat templates (not jinja2's HTML-safe one)."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


HF = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
HF.filters["tojson"] = _tojson
# The assistant branch of the GLM-4.5/4.6 and GLM-4.7 chat templates (``m`` the message;
# ``visible_text`` and the history rules left out: one current assistant turn).
GLM45 = HF.from_string("""<|assistant|>
{%- set reasoning_content = m.reasoning_content or '' %}
{%- set content = m.content %}
{%- if reasoning_content -%}
{{ '\\n<think>' + reasoning_content.strip() +  '</think>'}}
{%- else -%}
{{ '\\n<think></think>' }}
{%- endif -%}
{%- if content.strip() -%}
{{ '\\n' + content.strip() }}
{%- endif -%}
{% if m.tool_calls %}
{% for tc in m.tool_calls %}
{%- if tc.function %}
    {%- set tc = tc.function %}
{%- endif %}
{{ '\\n<tool_call>' + tc.name }}
{% set _args = tc.arguments %}
{% for k, v in _args.items() %}
<arg_key>{{ k }}</arg_key>
<arg_value>{{ v | tojson(ensure_ascii=False) if v is not string else v }}</arg_value>
{% endfor %}
</tool_call>{% endfor %}
{% endif %}""")
GLM47 = HF.from_string("""<|assistant|>
{%- set reasoning_content = m.reasoning_content or '' %}
{%- set content = m.content %}
{%- if reasoning_content -%}
{{ '<think>' + reasoning_content.strip() +  '</think>'}}
{%- else -%}
{{ '</think>' }}
{%- endif -%}
{%- if content.strip() -%}
{{ content.strip() }}
{%- endif -%}
{% if m.tool_calls %}
{% for tc in m.tool_calls %}
{%- if tc.function %}
    {%- set tc = tc.function %}
{%- endif %}
{{- '<tool_call>' + tc.name -}}
{% set _args = tc.arguments %}{% for k, v in _args.items() %}<arg_key>{{ k }}</arg_key>\
<arg_value>{{ v | tojson(ensure_ascii=False) if v is not string else v }}</arg_value>\
{% endfor %}</tool_call>{% endfor %}
{% endif %}""")

Calls = list[tuple[str, dict[str, Any]]]


def render_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render(reasoning: str, content: str, calls: Calls, version: str) -> tuple[str, list[int], str]:
    """The model's output for one assistant turn (after the ``<|assistant|>`` prompt), as the
    template renders it; where each ``</arg_value>`` ends; the text outside the calls. Checked
    against the jinja2 rendering of the template itself."""
    new = version == "4.5"
    nl = "\n" if new else ""
    head = (f"{nl}<think>{reasoning.strip()}</think>" if reasoning else    # as jinja: not stripped
            "\n<think></think>" if new else "</think>")
    out = outside = head + (nl + content.strip() if content.strip() else "")
    ends: list[int] = []
    for name, args in calls:
        out += f"{nl}<tool_call>{name}{nl}"
        outside += nl
        for key, value in args.items():
            out += f"<arg_key>{key}</arg_key>{nl}<arg_value>{render_value(value)}</arg_value>"
            ends.append(len(out))
            out += nl
        out += "</tool_call>"
    message = {"role": "assistant", "reasoning_content": reasoning, "content": content,
               "tool_calls": [{"type": "function", "function": {"name": n, "arguments": a}}
                              for n, a in calls]}
    jinja = (GLM45 if new else GLM47).render(m=message)
    assert jinja == "<|assistant|>" + out, (jinja, out)
    return out, ends, outside


TAG_BITS = ["\n", " ", "<", ">", "&", "&lt;", "<arg_key>", "</arg_key>", "<arg_value>",
            "</arg_value", "<tool_call>", "</tool_call>", "<think>", "</think>", "</arg_",
            "null", "42", '"', "\\n"]
text_value = st.lists(st.one_of(st.text(chars, max_size=6), st.sampled_from(TAG_BITS)),
                      max_size=5).map("".join).filter(lambda s: "</arg_value>" not in s)
# vLLM's parser ends the call at a </tool_call> even inside a value (ours: the value's text)
vllm_text_value = text_value.filter(lambda s: "</tool_call>" not in s)
json_object = st.dictionaries(st.text(chars, max_size=6), json_values, max_size=3)
json_array = st.lists(json_values, max_size=3)
finite = st.floats(allow_nan=False, allow_infinity=False)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "code": code_text, "timeout": finite, "query": text_value, "k": st.integers(-10**20, 10**20),
    "filters": st.lists(st.text(chars, max_size=5), max_size=3), "s": text_value,
    "n": st.integers(-10**20, 10**20), "x": finite, "b": st.booleans(), "o": json_object,
    "a": json_array, "u": st.none() | st.integers(), "e": st.booleans() | json_object,
    "city": text_value, "raw": json_values, "ключ": text_value,
}
PARAMS = {tool: [*schema["properties"], "raw", "ключ"] for tool, schema in SCHEMAS.items()}
NAMES = st.sampled_from(sorted(SCHEMAS))
PROSE = st.lists(st.one_of(st.text(chars, max_size=4), st.sampled_from(
    ["<", "<tool_", "</tool_call>", "<arg_key>", "<arg_value>x", "</arg_value>", "\n",
     "<think>", "</think>"])), max_size=4).map("".join).filter(lambda s: "<tool_call>" not in s)


def draw_calls(data: st.DataObject, vllm_safe: bool = False) -> Calls:
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
        if all("</arg_value>" not in render_value(v) for v in args.values()):
            calls.append((name, args))    # a value cannot hold its closing tag
    return calls


def expected_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """What the call's arguments read back as: by the schema, else the text written."""
    props = SCHEMAS[name]["properties"]
    return {k: json.loads(json.dumps(v)) if k in props else render_value(v)
            for k, v in args.items()}


def parser(unit: str = "line", **kw: Any) -> Glm45Parser:
    streams = {"python": {"code": unit}, "f": {"s": unit, "n": unit}, "search": {"query": unit}}
    return Glm45Parser(id_prefix="t", schemas=SCHEMAS, streams=streams, **kw)


def feed_tracked(p: Glm45Parser, pieces: list[str]) -> list[tuple[int, Event]]:
    out = [(i, e) for i, piece in enumerate(pieces) for e in p.feed(piece)]
    return out + [(len(pieces), e) for e in p.close()]


@SETTINGS
@given(st.data(), st.sampled_from(["line", "statement", "raw"]), st.sampled_from(["4.5", "4.7"]))
def test_template_rendering_any_tokenization(data: st.DataObject, unit: str, version: str) -> None:
    calls = draw_calls(data)
    text, ends, outside = render(data.draw(PROSE), data.draw(PROSE), calls, version)
    tail = data.draw(st.sampled_from(["", "\n", " Done.", "<tool_c", "<|user|>"]))
    text, outside = text + tail, outside + tail
    whole = feed_all(parser(unit), [text])
    check_grammar(whole)
    done = [e for e in whole if isinstance(e, CallDone)]
    assert [(e.name, e.args) for e in done] == [(n, expected_args(n, a)) for n, a in calls]
    assert [e.index for e in done] == list(range(len(calls)))
    assert not any(isinstance(e, CallMalformed) for e in whole)
    assert "".join(e.text for e in whole if isinstance(e, Text)) == outside
    for e in whole:                # streamed: only string fields, and they join to the value
        if isinstance(e, TextChunk):
            assert e.path in {("code",), ("s",), ("query",)}
    for f in (e for e in whole if isinstance(e, FieldDone)):
        if f.path in {("code",), ("s",), ("query",)} and f.value:
            assert any(isinstance(e, TextChunk) and e.index == f.index and e.path == f.path
                       for e in whole)
    for _ in range(5):
        pieces = split(text, draw_cuts(data, text))
        tracked = feed_tracked(parser(unit), pieces)
        events = [e for _, e in tracked]
        check_grammar(events)
        assert normalize(events) == normalize(whole), pieces
        # FieldDone in the very delta that completes its </arg_value>
        starts = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
        where = [i for i, e in tracked if isinstance(e, FieldDone)]
        assert len(where) == len(ends)
        for i, end in zip(where, ends, strict=True):
            assert starts[i] < end <= starts[i] + len(pieces[i]), (i, end, pieces)


def test_documented_example() -> None:
    text = ("<think>The user wants code run.</think>Running it.<tool_call>python<arg_key>code"
            "</arg_key><arg_value>for i in range(2):\n    print(i)\nx = 1</arg_value><arg_key>"
            "timeout</arg_key><arg_value>42</arg_value></tool_call>")
    evs = feed_all(parser("statement"), list(text))
    check_grammar(evs)
    code = "for i in range(2):\n    print(i)\nx = 1"
    assert normalize(evs) == [
        Text("<think>The user wants code run.</think>Running it."),
        CallStarted(0, "call_t_0", "python"), TextChunk(0, ("code",), code),
        FieldDone(0, ("code",), code), FieldDone(0, ("timeout",), 42),
        CallDone(0, "call_t_0", "python", {"code": code, "timeout": 42}), evs[-1]]
    pieces = [e.text for e in evs if isinstance(e, TextChunk)]
    assert pieces == ["for i in range(2):\n    print(i)\n", "x = 1"]   # statement by statement


def test_call_started_as_soon_as_the_name_ends() -> None:
    for sep in ("\n", "<"):
        p = parser()
        assert p.feed("<tool_call>python") == []
        assert p.feed(sep) == [CallStarted(0, "call_t_0", "python")]


# -- schema conversion (the rules are qwen3_xml's, tested there; here: GLM's framing) --------------

def one_call(value: str, schema: Any = None, **kw: Any) -> list[Event]:
    schemas = {"f": {"properties": {"v": schema}}} if schema is not None else None
    text = f"<tool_call>f\n<arg_key>v</arg_key>\n<arg_value>{value}</arg_value>\n</tool_call>"
    return feed_all(Glm45Parser(id_prefix="t", schemas=schemas, **kw), [text])


def value_of(value: str, schema: Any = None) -> Any:
    evs = one_call(value, schema)
    check_grammar(evs)
    done = [e for e in evs if isinstance(e, CallDone)]
    bad = [e.reason for e in evs if isinstance(e, CallMalformed)]
    return done[0].args["v"] if done else ("malformed", bad[0])


@pytest.mark.parametrize("raw,schema,expected", [
    ("42", {"type": "integer"}, 42), (" -7\n", {"type": "integer"}, -7),
    ("4.5", {"type": "number"}, 4.5), ("True", {"type": "boolean"}, True),
    ("null", {"type": ["integer", "null"]}, None), ('{"a": [1, null]}', {"type": "object"},
                                                    {"a": [1, None]}),
    ("[1, 'x']", {"type": "array"}, [1, "x"]), ("42", {"type": "string"}, "42"),
    ("\n spaced \n", {"type": "string"}, "\n spaced \n"),   # a value is its exact text
    ("", {"type": "string"}, ""), ("42", {"type": "int"}, "42"),
])
def test_schema_conversion(raw: str, schema: Any, expected: Any) -> None:
    got = value_of(raw, schema)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("raw,schema", [
    ("4.5", {"type": "integer"}), ("abc", {"type": "number"}), ("yes", {"type": "boolean"}),
    ("[1]", {"type": "object"}), ("", {"type": "integer"}), ("{'a': b'x'}", {"type": "object"}),
])
def test_value_that_does_not_fit_its_schema_is_malformed(raw: str, schema: Any) -> None:
    got = value_of(raw, schema)
    assert got[0] == "malformed" and "argument 'v'" in got[1] and "is not a valid" in got[1]


@pytest.mark.parametrize("raw", ["42", "true", "null", '{"a": 1}', "[1, 2]", "3.5"])
def test_without_schema_values_stay_strings(raw: str) -> None:
    assert value_of(raw) == raw
    evs = feed_all(Glm45Parser(schemas={"other": {"properties": {}}}), [
        f"<tool_call>f<arg_key>v</arg_key><arg_value>{raw}</arg_value></tool_call>"])
    assert [e.args for e in evs if isinstance(e, CallDone)] == [{"v": raw}]


def test_streams_only_fields_that_stay_text() -> None:
    streams = {"f": {"v": "raw"}}
    for schema, chunks in [({"type": "string"}, ["12"]), (None, ["12"]),
                           ({"type": "integer"}, []), ({"type": ["string", "null"]}, [])]:
        evs = one_call("12", schema, streams=streams)
        assert [e.text for e in evs if isinstance(e, TextChunk)] == chunks


def test_nesting_limit() -> None:
    ok, deep = "[" * 4 + "]" * 4, "[" * 5 + "]" * 5     # the arguments object is level 1
    for value, good in ((ok, True), (deep, False)):
        evs = one_call(value, {"type": "array"}, max_depth=5)
        check_grammar(evs)
        assert any(isinstance(e, CallDone) for e in evs) is good
        assert good or "nesting deeper than 5" in evs[-2].reason  # type: ignore[union-attr]


# -- hostile input -------------------------------------------------------------------------

FULL = render("Thinking.", "Let me check.", [("f", {"s": "a <b> & c\n", "n": 3}),
                                             ("python", {"code": "x = 1\nprint(x)\n"})], "4.5")[0]


def test_truncated_at_every_prefix() -> None:
    first_done = FULL.index("</tool_call>") + len("</tool_call>")
    second_done = FULL.rindex("</tool_call>") + len("</tool_call>")
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
    ("a <tool_ box> <tool_call <tool_callx> </tool_call> <arg_key>k</arg_key> <arg_value>1"
     "</arg_value> <tool"),
    "<think>I will call <arg_key>x</arg_key></think> no call here", "<", "</tool_call>",
    "<tool_call", "x <tool_call\n",
])
def test_look_alikes_are_text(text: str) -> None:
    for pieces in ([text], list(text)):
        evs = feed_all(parser(), pieces)
        assert all(isinstance(e, Text) for e in evs[:-1]), evs
        assert "".join(e.text for e in evs[:-1]) == text  # type: ignore[union-attr]


GOOD = "<tool_call>f\n<arg_key>n</arg_key>\n<arg_value>1</arg_value>\n</tool_call>"


@pytest.mark.parametrize("bad,reason", [
    ("<tool_call>rm\n<arg_key>p</arg_key>\n<arg_value>/</arg_value>\n</tool_call>",
     "unknown tool 'rm'"),
    (("<tool_call>f<arg_key>n</arg_key><arg_value>1</arg_value><arg_key> n </arg_key>"
      "<arg_value>2</arg_value></tool_call>"), "duplicate argument 'n'"),
    ("<tool_call>f<arg_key>n<arg_value>1</arg_value></tool_call>", "missing </arg_key>"),
    ("<tool_call>f<arg_key>n\n</tool_call>", "missing </arg_key>"),
    ("<tool_call>f<arg_value>1</arg_value></tool_call>", "value without a key"),
    ("<tool_call>f<arg_key>n</arg_key></tool_call>", "argument 'n' has no value"),
    ("<tool_call>f<arg_key>n</arg_key><arg_key>m</arg_key></tool_call>", "has no value"),
    ("<tool_call>f<arg_key>n</arg_key>1</tool_call>", "has no value"),
    ("<tool_call>f<arg_key></arg_key><arg_value>1</arg_value></tool_call>", "empty argument"),
    ("<tool_call>f<arg_key>" + "k" * 300 + "</arg_key></tool_call>", "argument name longer"),
    ("<tool_call></tool_call>", "missing tool name"),
    ("<tool_call>\n<arg_key>n</arg_key><arg_value>1</arg_value></tool_call>",
     "missing tool name"),
    ("<tool_call>" + "f" * 300 + "</tool_call>", "tool name longer"),
    ("<tool_call>f stray words</tool_call>", "unexpected text at 's' after the tool name"),
    ("<tool_call>f<arg_key>n</arg_key><arg_value>1</arg_value>junk</tool_call>",
     "after an argument"),
    ("<tool_call>f<arg_key>n</arg_key><arg_value>NaN</arg_value></tool_call>",
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


def test_missing_end_before_the_next_call() -> None:
    text = "<tool_call>f<arg_key>n</arg_key><arg_value>2</arg_value>\n" + GOOD
    for pieces in ([text], list(text)):
        evs = feed_all(parser(), pieces)
        check_grammar(evs)
        assert [e.reason for e in evs if isinstance(e, CallMalformed)] == [
            "missing </tool_call> before the next <tool_call>"]
        assert [(e.index, e.args) for e in evs if isinstance(e, CallDone)] == [(1, {"n": 1})]


@pytest.mark.parametrize("text,reason", [
    ("<tool_call>", "nothing after the tool name"), ("<tool_call>f", "nothing after"),
    ("<tool_call>f\n", "no </tool_call>"), ("<tool_call>f<arg_key>s", "no </arg_key>"),
    ("<tool_call>f<arg_key>s</arg_key", "no </arg_key>"),
    ("<tool_call>f<arg_key>s</arg_key>\n", "argument 's' has no value"),
    ("<tool_call>f<arg_key>s</arg_key><arg_value>abc", "unterminated argument 's'"),
    ("<tool_call>f<arg_key>s</arg_key><arg_value>abc</arg_val", "unterminated argument"),
    ("<tool_call>f<arg_key>s</arg_key><arg_value>abc</arg_value></tool_c", "no </tool_call>"),
])
def test_unterminated_at_close(text: str, reason: str) -> None:
    for pieces in ([text], list(text)):
        evs = feed_all(parser(), pieces)
        check_grammar(evs)
        bad = [e.reason for e in evs if isinstance(e, CallMalformed)]
        assert len(bad) == 1 and reason in bad[0], bad
        assert not any(isinstance(e, CallDone) for e in evs)


def test_only_the_closing_tag_ends_a_value() -> None:
    value = "x </tool_call> <arg_key>y</arg_key><arg_value>1 <tool_call> </arg_key> </arg_val"
    text = f"<tool_call>f<arg_key>s</arg_key><arg_value>{value}</arg_value></tool_call>"
    evs = feed_all(parser(), list(text))
    assert [e.args for e in evs if isinstance(e, CallDone)] == [{"s": value}]


def test_argument_limit() -> None:
    p = parser("raw", max_arg_chars=1000)
    evs = feed_all(p, ["<tool_call>f<arg_key>s</arg_key><arg_value>", "x" * 600, "y" * 600,
                       "</arg_value></tool_call>after"])
    check_grammar(evs)
    assert isinstance(evs[-3], CallMalformed) and "exceed 1000" in evs[-3].reason
    assert sum(len(e.text) for e in evs if isinstance(e, TextChunk)) < 1000
    assert evs[-2] == Text("after")


CHUNK = "abcdefg\n" * (64 * 1024 // 8)


def big_stream(n_chunks: int) -> Iterator[str]:
    yield "<tool_call>python\n<arg_key>code</arg_key>\n<arg_value>"
    for i in range(n_chunks):   # a fresh string each time, so that keeping it costs memory
        yield CHUNK[:-9] + f"{i:08d}\n"
    yield "</arg_value>\n</tool_call>bye"


def test_50mb_value_is_not_buffered() -> None:
    p = parser("line", max_arg_chars=2_000_000)
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
        text = ("<tool_call>python<arg_key>code</arg_key><arg_value>"
                + "".join(f"x{i} = '<b>' < {i}  # </arg_\n" for i in range(n_lines))
                + "</arg_value></tool_call>")
        best = float("inf")
        for _ in range(3):
            p = parser("statement")
            t0 = time.perf_counter()
            evs = [e for i in range(0, len(text), 4) for e in p.feed(text[i:i + 4])] + p.close()
            best = min(best, (time.perf_counter() - t0) / len(text))
        assert [type(e).__name__ for e in evs[-2:]] == ["CallDone", "StreamDone"]
        return best

    small, big = per_char(2_000), per_char(8_000)   # 4x the input: < 6x the time
    assert big < 1.5 * small, (small, big)


VOCAB = ["<tool_call>", "</tool_call>", "f", "python", "rm", "\n", "<arg_key>", "</arg_key>",
         "<arg_value>", "</arg_value>", "n", "s", "code", "<", ">", " ", "x", "42", "{", "}",
         "</arg_", "<tool_", "<arg", "True", "null", "[1, 2]", "if x:\n", "    y\n",
         "<think>", "</think>"]


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


# -- against vLLM's own glm45 / glm47 parser ------------------------------------------------------

GLM_TAGS = ["<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>",
            "</arg_value>", "<think>", "</think>"]


def _byte_decoder() -> dict[str, int]:
    """Byte-level BPE's printable stand-in for each byte (the GPT-2 table), reversed."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
          *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + len(cs) - 188)
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


_BYTES = _byte_decoder()


@pytest.fixture(scope="module")
def vllm_glm(bundled_model: pathlib.Path) -> Any:
    """vLLM's ``glm45`` tool parser (also registered as ``glm47``), a copy of the bundled
    SmolLM2 tokenizer with GLM's tags added as special tokens (as GLM's tokenizer has them),
    and a request with the tools' schemas."""
    try:
        from transformers import AddedToken, AutoTokenizer
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.tool_parsers import ToolParserManager
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
        pytest.skip(f"vllm is not importable ({type(e).__name__}: {e})")
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model))
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in GLM_TAGS],
                         special_tokens=True)
    vocab = tokenizer.get_vocab()              # vLLM reads it per parser: 60 ms each time
    tokenizer.get_vocab = lambda: vocab  # type: ignore[method-assign]
    cls = ToolParserManager.get_tool_parser("glm45")
    assert ToolParserManager.get_tool_parser("glm47") is cls
    tools: Any = [{"type": "function", "function": {"name": n, "parameters": s}}
                  for n, s in SCHEMAS.items()]
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                                    tools=tools)
    return cls, tokenizer, request


def token_deltas(tokenizer: Any, text: str, rng: random.Random) -> list[tuple[str, list[int]]]:
    """``text`` as a server streams it: its tokens in random groups, each with its text, cut
    only where the text decoded so far is whole characters (SmolLM2's byte-level BPE)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if tokenizer.decode(ids, clean_up_tokenization_spaces=False) != text:
        # characters SmolLM2's vocabulary cannot spell: text deltas without token ids
        cuts = sorted(rng.sample(range(len(text)), len(text) // 3))
        return [(piece, []) for piece in split(text, cuts)]
    table = _BYTES
    decoder = codecs.getincrementaldecoder("utf-8")()
    out: list[tuple[str, list[int]]] = []
    piece, group = "", []
    for tid, tok in zip(ids, tokenizer.convert_ids_to_tokens(ids), strict=True):
        raw = tok.encode() if tok in GLM_TAGS else bytes(table[c] for c in tok)
        piece += decoder.decode(raw)
        group.append(tid)
        if decoder.getstate()[0] == b"" and rng.random() < 0.4:
            out.append((piece, group))
            piece, group = "", []
    if group:
        out.append((piece, group))
    assert "".join(p for p, _ in out) == text
    return out



def vllm_final_offsets(args: dict[str, Any]) -> dict[str, int]:
    """Where in vLLM's streamed ``json.dumps(args)`` each member is final (a number: once
    its delimiter is in)."""
    items = list(args.items())
    out = {}
    for i, (k, v) in enumerate(items):
        end = len(json.dumps(dict(items[:i + 1]), ensure_ascii=False)) - 1
        out[k] = end + (1 if isinstance(v, (int, float)) and not isinstance(v, bool) else 0)
    return out


@pytest.mark.vllm
@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_same_calls_as_vllm_no_later(vllm_glm: Any, data: st.DataObject) -> None:
    cls, tokenizer, request = vllm_glm
    calls = draw_calls(data, vllm_safe=True)
    version = data.draw(st.sampled_from(["4.5", "4.7"]))
    text, _, _ = render(data.draw(st.sampled_from(["", "Hmm."])), data.draw(st.sampled_from(["", "Sure.", "Let me look.\n"])),
                        calls, version)
    ours_events = feed_all(parser(), [text])
    ours = [(e.name, e.args) for e in ours_events if isinstance(e, CallDone)]
    assert ours == [(n, expected_args(n, a)) for n, a in calls]
    info = cls(tokenizer, request.tools).extract_tool_calls(text, request)
    theirs = [(c.function.name, json.loads(c.function.arguments))
              for c in (info.tool_calls if info.tools_called else [])]
    assert theirs == ours

    # streamed: each argument final in our events no later than in vLLM's streamed arguments
    deltas = token_deltas(tokenizer, text, random.Random(data.draw(st.integers(0, 2 ** 32))))
    p, prev = Glm45Parser(id_prefix="t", schemas=SCHEMAS), ""
    prev_ids: list[int] = []
    when: dict[tuple[int, str], int] = {}
    for d, (piece, _) in enumerate(deltas):
        for e in p.feed(piece):
            if isinstance(e, FieldDone):
                when[e.index, str(e.path[0])] = d
    vp = cls(tokenizer, request.tools)
    streamed: list[str] = []
    lengths: list[list[int]] = []
    for d, (piece, ids) in enumerate([*deltas, ("", [])]):
        if d < len(deltas):
            msg = vp.extract_tool_calls_streaming(prev, prev + piece, piece, prev_ids,
                                                  prev_ids + ids, ids, request)
            prev, prev_ids = prev + piece, prev_ids + ids
        else:
            msg = vp.finish_streaming()
        for tc in (msg.tool_calls if msg is not None and msg.tool_calls else []):
            while len(streamed) <= tc.index:
                streamed.append("")
            if tc.function is not None and tc.function.arguments:
                streamed[tc.index] += tc.function.arguments
        lengths.append([len(a) for a in streamed])
    assert [json.loads(s) for s in streamed] == [a for _, a in ours], streamed
    for index, args_json in enumerate(streamed):
        vargs = json.loads(args_json)
        assert args_json == json.dumps(vargs, ensure_ascii=False)
        for key, offset in vllm_final_offsets(vargs).items():
            theirs_at = next(d for d, ls in enumerate(lengths)
                             if index < len(ls) and ls[index] >= offset)
            assert when[index, key] <= theirs_at, (index, key, deltas)


@pytest.mark.parametrize("version", ["4.5", "4.7"])
@pytest.mark.parametrize("reasoning", ["\r", "\n", " \r\n"])
def test_whitespace_reasoning_renders_an_empty_think_block_kept_as_text(
        reasoning: str, version: str) -> None:
    """The template tests the reasoning unstripped, so whitespace alone gives ``<think></think>``
    (not 4.7's bare ``</think>``); the parser passes that block through as text at any split."""
    text, _, outside = render(reasoning, "", [], version)
    assert text.endswith("<think></think>")
    for cut in range(len(text) + 1):
        events = feed_all(parser("line"), [text[:cut], text[cut:]])
        assert "".join(e.text for e in events if isinstance(e, Text)) == outside
