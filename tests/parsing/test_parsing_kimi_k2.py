"""Kimi K2 tool calls (``kimi_k2``): the chat template's rendering under any tokenization, each
argument final no later than the delta that completes it, hostile input always a clear
``CallMalformed`` or text, and on valid output the same calls and ids as vLLM's ``kimi_k2``."""

from __future__ import annotations

import json
import pathlib
import random
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import jinja2.sandbox
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parsing_support import (
    chars,
    check_grammar,
    code_text,
    draw_cuts,
    feed_all,
    normalize,
    split,
)

from conveyor_integrations.events import (
    CallDone,
    CallMalformed,
    CallStarted,
    Event,
    FieldDone,
    StreamDone,
    Text,
    TextChunk,
)
from conveyor_integrations.parsing.kimi_k2 import KimiK2Parser

SETTINGS = settings(max_examples=250, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
STREAMS = {"python": {"code": "line"}}

S, E = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
C, A, CE = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"
MARKERS = (S, E, C, A, CE, "<|tool_call_section_begin|>", "<|tool_call_section_end|>")


def parse(text: str | list[str], **kw: Any) -> list[Event]:
    kw.setdefault("id_prefix", "t")
    return feed_all(KimiK2Parser(**kw), [text] if isinstance(text, str) else text)


def done_calls(events: list[Event]) -> list[tuple[str, str, Any]]:
    return [(e.id, e.name, e.args) for e in events if isinstance(e, CallDone)]


def reasons(events: list[Event]) -> list[str]:
    return [e.reason for e in events if isinstance(e, CallMalformed)]


def texts(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Text))


def same_json(got: Any, want: Any) -> None:
    assert json.dumps(got) == json.dumps(want)       # -0.0 is not 0.0, 1 is not 1.0


# -- the chat template ------------------------------------------------------------------------

# The assistant tool-call part of Kimi-K2-Instruct(-0905)'s chat_template.jinja, transcribed.
TEMPLATE = """\
{%- if message['role'] == 'assistant' and message.get('tool_calls') -%}
  {%- if message['content'] -%}{{ message['content'] }}{%- endif -%}
  <|tool_calls_section_begin|>
  {%- for tool_call in message['tool_calls'] -%}
    {%- set formatted_id = tool_call['id'] -%}
    <|tool_call_begin|>{{ formatted_id }}<|tool_call_argument_begin|>{% if tool_call['function']['arguments'] is string %}{{ tool_call['function']['arguments'] }}{% else %}{{ tool_call['function']['arguments'] | tojson }}{% endif %}<|tool_call_end|>
  {%- endfor -%}
  <|tool_calls_section_end|>
{%- endif -%}
"""


def _hf_tojson(x: Any, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
    """transformers' ``tojson`` filter (jinja2's own escapes HTML and sorts keys)."""
    return json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
                      sort_keys=sort_keys)


_ENV = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
_ENV.filters["tojson"] = _hf_tojson
RENDER = _ENV.from_string(TEMPLATE)

LOOK_ALIKES = ["<|tool_call_end|", "<|tool_call", "<|tool_calls_section_end", "<|tool_c",
               "|>", "<|", "<tool_call>", "</tool_call>", "<|im_end|>", "functions.f:0",
               "<|tool_call_begin", "<|tool_callx|>", "tool_call_end|>", "<<|tool_call_end|"]
TEXT = st.lists(st.one_of(st.text(chars, max_size=5), st.sampled_from(LOOK_ALIKES)),
                max_size=4).map("".join)
LEAF = (st.none() | st.booleans() | st.integers(-(10 ** 20), 10 ** 20)
        | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
VALUES = st.recursive(LEAF, lambda c: st.lists(c, max_size=3)
                      | st.dictionaries(TEXT, c, max_size=3), max_leaves=8)
KEYS = st.one_of(st.sampled_from(["q", "k", "path", "n", "opts", "é", ""]), TEXT)
NAMES = st.sampled_from(["python", "search", "get_weather", "ns.tool", "a-b"])
PROSE = st.lists(st.one_of(st.text(chars, max_size=5), st.sampled_from(
    ["\n", " ", "<|tool_c", "<|tool_calls_section_begi", "<|tool_call_begin|>", "<|im_end|>",
     "<|tool_calls_section_end|>", "<|tool_calls_section_begin|"])), max_size=4).map("".join)
TAILS = st.sampled_from(["", "", " Done.", "\nok", "<|tool_c", " <|tool_calls_section_end",
                         "<|tool_call_begin|>x"])
OPENS = st.sampled_from(["{", "{", "{ ", "{\n  "])
COMMAS = st.sampled_from([", ", ",", ",\n  ", " , "])
COLONS = st.sampled_from([": ", ":", " : "])
CLOSES = st.sampled_from(["}", "}", " }", "\n}"])
SEPARATORS = st.sampled_from([None, (",", ":"), (", ", ": ")])
INDENT = st.sampled_from([None, None, 2])
BOOL = st.booleans()
STYLE = st.sampled_from(["tojson", "string", "string"])


def has_marker(obj: Any) -> bool:
    return any(m in json.dumps(obj, ensure_ascii=False) for m in MARKERS)


def spell(data: st.DataObject, args: dict[str, Any]) -> tuple[Any, str, dict[str, int]]:
    """The arguments as the message holds them: a dict (the template's ``| tojson``) or a JSON
    string spelled one of many ways; its text; where in it each member is final."""
    ends: dict[str, int] = {}
    if data.draw(STYLE) == "tojson":
        text = _hf_tojson(args)
        items = list(args.items())
        for i, (k, _) in enumerate(items):
            ends[k] = len(_hf_tojson(dict(items[:i + 1]))) - 1
        given: Any = args
    else:
        ascii_, seps, indent = data.draw(BOOL), data.draw(SEPARATORS), data.draw(INDENT)
        text = data.draw(OPENS) if args else data.draw(st.sampled_from(["{}", "{ }", "{\n}"]))
        for i, (k, v) in enumerate(args.items()):
            if i:
                text += data.draw(COMMAS)
            text += json.dumps(k, ensure_ascii=ascii_) + data.draw(COLONS) + json.dumps(
                v, ensure_ascii=ascii_, separators=seps, indent=indent)
            ends[k] = len(text)
        text += data.draw(CLOSES) if args else ""
        given = text
    for k, v in args.items():     # a number is final at the character after it
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            ends[k] += 1
    return given, text, ends


Call = tuple[str, str, dict[str, Any]]


def draw_message(data: st.DataObject, vllm_safe: bool = False
                 ) -> tuple[str, list[Call], list[dict[str, int]], str]:
    """A message: text, the template's section of 1-3 calls, text after (not from the template:
    a model may write it). Returns the text, the calls (id, name, args), where in the text each
    top-level argument is final, and the text outside the calls."""
    # vllm_safe: no <|im_end|>, a special token of the (SmolLM2) tokenizer vLLM works with,
    # which it drops from the text it decodes (in Kimi's, too, it is the end of the turn)
    content = data.draw(PROSE.filter(lambda s: S not in s and "<|tool_call_section_begin|>"
                                     not in s and not (vllm_safe and "<|im_end|>" in s)))
    # loose: newlines around headers and between calls, as in vLLM's docs of the format
    loose = data.draw(st.sampled_from([False, False, False, True]))
    calls: list[Call] = []
    tool_calls = []
    text = content + S + ("\n" if loose else "")
    finals: list[dict[str, int]] = []
    for i in range(data.draw(st.integers(1, 3))):
        name = data.draw(NAMES)
        keys = data.draw(st.lists(KEYS, unique=True, max_size=4))
        args = {k: data.draw(VALUES) for k in keys}
        if name == "python":
            args["code"] = data.draw(code_text)
        if has_marker(args) or (vllm_safe and "<|im_end|>" in json.dumps(args, ensure_ascii=False)):
            args = {"q": "x"}     # markers are special tokens: never inside a string
        call_id = (f"functions.{name}" if data.draw(st.integers(0, 3)) else name) + \
            f":{data.draw(st.integers(0, 30)) if i else 0}"
        given, args_text, ends = spell(data, args)
        head = C + (f" {call_id}\n" if loose else call_id) + A
        at = len(text) + len(head)
        finals.append({k: at + e for k, e in ends.items()})
        text += head + args_text + CE + ("\n" if loose else "")
        calls.append((call_id, name, json.loads(args_text)))
        tool_calls.append({"id": call_id, "type": "function",
                           "function": {"name": name, "arguments": given}})
    text += E
    if not loose:   # exactly what the chat template writes
        assert RENDER.render(message={"role": "assistant", "content": content,
                                      "tool_calls": tool_calls}) == text
    tail = "" if vllm_safe else data.draw(TAILS)
    return text + tail, calls, finals, content + tail


@SETTINGS
@given(st.data())
def test_template_rendering_any_tokenization(data: st.DataObject) -> None:
    text, expected, finals, outside = draw_message(data)
    whole = normalize(parse(text, streams=STREAMS))
    check_grammar(whole)
    same_json(done_calls(whole), expected)
    assert not reasons(whole)
    assert texts(whole) == outside
    assert [(e.index, e.id) for e in whole if isinstance(e, CallStarted)] == [
        (i, c[0]) for i, c in enumerate(expected)]
    for _ in range(4):
        pieces = split(text, draw_cuts(data, text))
        parser = KimiK2Parser(id_prefix="t", streams=STREAMS)
        events: list[Event] = []
        seen = 0
        for piece in pieces:
            seen += len(piece)
            for e in parser.feed(piece):
                events.append(e)
                if isinstance(e, FieldDone) and len(e.path) == 1:
                    # no later than the delta holding the value's last character
                    assert seen - len(piece) < finals[e.index][str(e.path[0])], (e, pieces)
        events += parser.close()
        check_grammar(events)
        assert normalize(events) == whole, pieces


def test_each_value_final_at_its_last_character() -> None:
    args = '{"s": "a\\"b", "n": 12, "t": true, "l": [1, {"x": null}], "o": {}, "f": -0.5e3}'
    text = S + C + "functions.f:0" + A + args + CE + E
    p = KimiK2Parser(id_prefix="t")
    got: dict[Any, int] = {}
    for i, ch in enumerate(text):
        for e in p.feed(ch):
            if isinstance(e, FieldDone):
                got[e.path] = i
            elif isinstance(e, CallStarted):
                got["started"] = i
            elif isinstance(e, CallDone):
                got["done"] = i
    base = len(S + C + "functions.f:0" + A)
    assert got["started"] == base - 1                      # at the argument marker's end
    assert got[("s",)] == base + args.index('", "n"')
    assert got[("n",)] == base + args.index("12") + 2       # at the "," after it
    assert got[("t",)] == base + args.index("true") + 3
    assert got[("l",)] == base + args.index('}], "o"') + 1
    assert got[("o",)] == base + args.index('{}, "f"') + 1
    assert got[("f",)] == base + len(args) - 1              # at the closing "}"
    assert got["done"] == base + len(args) + len(CE) - 1


def test_documented_example() -> None:
    text = ("Let me check.<|tool_calls_section_begin|><|tool_call_begin|>functions.python:0"
            '<|tool_call_argument_begin|>{"code": "for i in range(2):\\n    print(i)\\nx = 1"'
            ', "timeout": 5}<|tool_call_end|><|tool_calls_section_end|>')
    evs = parse(list(text), streams={"python": {"code": "statement"}})
    check_grammar(evs)
    code = "for i in range(2):\n    print(i)\nx = 1"
    assert normalize(evs) == [
        Text("Let me check."), CallStarted(0, "functions.python:0", "python"),
        TextChunk(0, ("code",), code), FieldDone(0, ("code",), code),
        FieldDone(0, ("timeout",), 5),
        CallDone(0, "functions.python:0", "python", {"code": code, "timeout": 5}),
        StreamDone()]
    pieces = [e.text for e in evs if isinstance(e, TextChunk)]
    assert pieces == ["for i in range(2):\n    print(i)\n", "x = 1"]


# -- the format's details ----------------------------------------------------------------------

@pytest.mark.parametrize("header,call_id,name", [
    ("functions.get_weather:0", "functions.get_weather:0", "get_weather"),
    ("get_weather:12", "get_weather:12", "get_weather"),            # vLLM takes it too
    ("functions.ns.tool:3", "functions.ns.tool:3", "ns.tool"),
    ("functions.a:b:7", "functions.a:b:7", "a:b"),                  # the name: up to the last :
    ("\n functions.f:0\n", "functions.f:0", "f"),                  # whitespace around
    ("functions.:17", "functions.:17", "functions."),
])
def test_call_ids(header: str, call_id: str, name: str) -> None:
    text = S + C + header + A + '{"a": 1}' + CE + E
    for pieces in ([text], list(text)):
        evs = parse(pieces)
        check_grammar(evs)
        assert done_calls(evs) == [(call_id, name, {"a": 1})]
        assert [e.id for e in evs if isinstance(e, CallStarted)] == [call_id]


def test_layout_variants() -> None:
    """Empty arguments, whitespace between calls and around the JSON, the singular section
    markers vLLM's earlier kimi_k2 parser took, several sections, text between calls."""
    text = ("a" + "<|tool_call_section_begin|>" + C + "f:0" + A + CE + " \n" + C + "f:1" + A
            + ' \n {"x": [1]} \n' + CE + "<|tool_call_section_end|>" + "b" + S + "\n" + C
            + "g:2" + A + "{ }" + CE + " note " + C + "g:3" + A + "{}" + CE + E + "c")
    for pieces in ([text], list(text)):
        evs = parse(pieces)
        check_grammar(evs)
        assert done_calls(evs) == [("f:0", "f", {}), ("f:1", "f", {"x": [1]}),
                                   ("g:2", "g", {}), ("g:3", "g", {})]
        assert texts(evs) == "abnote c"


def test_streamed_string_argument() -> None:
    code = "import os\nfor i in range(3):\n    print(i)\nx = '\"'\n"
    text = S + C + "functions.python:0" + A + json.dumps({"code": code, "n": 1}) + CE + E
    for unit in ("line", "statement", "raw"):
        evs = parse(list(text), streams={"python": {"code": unit}})
        check_grammar(evs)
        pieces = [e.text for e in evs if isinstance(e, TextChunk)]
        assert "".join(pieces) == code
        if unit == "line":
            assert pieces == code.splitlines(keepends=True)
    evs = parse(text, streams={"other": {"code": "line"}})
    assert not any(isinstance(e, TextChunk) for e in evs)


def test_limits() -> None:
    text = S + C + "f:0" + A + '{"a": [[1]]}' + CE + C + "f:1" + A + '{"a": [[[1]]]}' + CE + E
    evs = parse(text, max_depth=3)
    assert done_calls(evs) == [("f:0", "f", {"a": [[1]]})]
    assert reasons(evs) == ["nesting deeper than 3 levels at character 8"]
    evs = parse([S + C + "f:0" + A + '{"a": "', "x" * 600, "y" * 600, '"}' + CE + C + "g:1" + A
                 + "{}" + CE + E + " after"], max_arg_chars=1000, streams={"f": {"a": "raw"}})
    check_grammar(evs)
    assert reasons(evs) == ["arguments exceed 1000 characters"]
    assert sum(len(e.text) for e in evs if isinstance(e, TextChunk)) <= 1000
    assert done_calls(evs) == [("g:1", "g", {})] and texts(evs) == " after"


# -- hostile input -------------------------------------------------------------------------

GOOD = C + "functions.f:9" + A + '{"n": 1}' + CE
FULL = ("Let me check." + S + C + "functions.search:0" + A
        + '{"q": "it\'s \\"x\\" <|tool_call_end|", "tags": ["a", 2.5e-3], "o": {"k": null}}'
        + CE + C + "functions.python:1" + A + '{"code": "x = 1\\nprint(x)\\n", "flag": true}'
        + CE + E + " Done.")


def test_truncated_at_every_prefix() -> None:
    ends = [i + len(CE) for i in range(len(FULL)) if FULL.startswith(CE, i)]
    begins = [i + len(C) for i in range(len(FULL)) if FULL.startswith(C, i)]
    for cut in range(len(FULL) + 1):
        prefix = FULL[:cut]
        for pieces in ([prefix], split(prefix, range(0, cut, 7))):
            evs = parse(pieces, streams={"python": {"code": "line"}})
            check_grammar(evs)
            done = {e.index for e in evs if isinstance(e, CallDone)}
            assert done == {i for i, end in enumerate(ends) if cut >= end}, prefix
            bad = [e for e in evs if isinstance(e, CallMalformed)]
            assert {e.index for e in bad} == {i for i, b in enumerate(begins)
                                               if cut >= b and i not in done}, prefix
            assert all(e.reason.startswith("truncated call") for e in bad), bad


@pytest.mark.parametrize("bad,reason", [
    (C + "functions.rm:0" + A + '{"p": "/"}' + CE, "unknown tool 'rm'"),
    (C + "functions.f:0" + A + '{"n": 1, "n": 2}' + CE, "duplicate key 'n'"),
    (C + "functions.f:0" + A + '{"n": 01}' + CE, "invalid number"),
    (C + "functions.f:0" + A + '{"n": 1,}' + CE, "expected a string key"),
    (C + "functions.f:0" + A + "[1, 2]" + CE, "expected a JSON object"),
    (C + "functions.f:0" + A + "{'n': 1}" + CE, "expected a string key"),
    (C + "functions.f:0" + A + '{"n": "abc' + CE, "truncated arguments JSON before <|tool_call_end|>"),
    (C + "functions.f:0" + A + '{"n": 1} extra' + CE, "unexpected text after the arguments JSON"),
    (C + "functions.f:0" + A + '{"n": 1}', "missing <|tool_call_end|> before <|tool_call_begin|>"),
    (C + "functions.f:0" + A + '{"n": ', "truncated arguments JSON before <|tool_call_begin|>"),
    (C + "functions.f:0" + A + '{"n": 1}' + A + CE, "unexpected <|tool_call_argument_begin|>"),
    (C + "functions.f" + A + "{}" + CE, "malformed call id 'functions.f'"),
    (C + "functions.f:x" + A + "{}" + CE, "malformed call id"),
    (C + ":0" + A + "{}" + CE, "malformed call id"),
    (C + "functions.f g:0" + A + "{}" + CE, "malformed call id"),
    (C + A + "{}" + CE, "malformed call id ''"),
    (C + "functions.f:0" + '{"n": 1}' + CE, "expected <|tool_call_argument_begin|> after the call"),
    (C + "f" * 600 + ":0" + A + "{}" + CE, "call id longer than 512 characters"),
])
def test_malformed_calls_then_recovery(bad: str, reason: str) -> None:
    text = "before " + S + bad + GOOD + E + " after"
    whole = parse(text, tools=["f"])
    for pieces in ([text], list(text)):
        evs = parse(pieces, tools=["f"])
        check_grammar(evs)
        assert normalize(evs) == normalize(whole)
        assert len(reasons(evs)) == 1 and reason in reasons(evs)[0], reasons(evs)
        assert done_calls(evs) == [("functions.f:9", "f", {"n": 1})]
        assert texts(evs) == "before  after"


def test_missing_call_end_before_section_end() -> None:
    evs = parse(S + C + "f:0" + A + '{"n": 1}' + E + "ok")   # vLLM takes this call
    assert reasons(evs) == ["missing <|tool_call_end|> before <|tool_calls_section_end|>"]
    assert texts(evs) == "ok"


@pytest.mark.parametrize("text,reason", [
    (S + C, "truncated call: no <|tool_call_argument_begin|>"),
    (S + C + "functions.f:0", "truncated call: no <|tool_call_argument_begin|>"),
    (S + C + "functions.f:0<|tool_call_arg", "truncated call: no <|tool_call_argument_begin|>"),
    (S + C + "functions.f:0" + A, "truncated call: arguments JSON incomplete"),
    (S + C + "functions.f:0" + A + '{"a": "x', "truncated call: arguments JSON incomplete"),
    (S + C + "functions.f:0" + A + '{"a": 1}', "truncated call: no <|tool_call_end|>"),
    (S + C + "functions.f:0" + A + '{"a": 1} <|tool_call_en', "truncated call: no <|tool_call_end|>"),
])
def test_truncated_at_close(text: str, reason: str) -> None:
    for pieces in ([text], list(text)):
        evs = parse(pieces)
        check_grammar(evs)
        assert reasons(evs) == [reason] and not done_calls(evs)


@pytest.mark.parametrize("text", [
    C + "functions.f:0" + A + "{}" + CE,                     # no section: text, as in vLLM
    "<|tool_calls_section_begi", "<|tool_calls_section_begin|", "<|tool_callsx", "<|",
    "<tool_call>{}</tool_call>", "a <|tool_calls_section_end|> b", "<|im_end|>",
    "<|tool_call_section_beginning|>", "<<|tool_calls_section_begin",
])
def test_look_alikes_are_text(text: str) -> None:
    for pieces in ([text], list(text)):
        evs = parse(pieces)
        assert all(isinstance(e, Text) for e in evs[:-1]), evs
        assert texts(evs) == text


def test_markers_end_a_string_look_alikes_do_not() -> None:
    value = '"a <|tool_call_end| <|tool_callx|> <|tool_calls_section_end <tool_call> |>"'
    evs = parse(S + C + "f:0" + A + '{"v": ' + value + "}" + CE + E)
    assert done_calls(evs) == [("f:0", "f", {"v": json.loads(value)})]
    # a marker is a special token: inside an open string it still ends the call
    evs = parse(S + C + "f:0" + A + '{"v": "a' + CE + GOOD + E + "x")
    assert reasons(evs) == ["truncated arguments JSON before <|tool_call_end|>"]
    assert done_calls(evs) == [("functions.f:9", "f", {"n": 1})] and texts(evs) == "x"


def test_calls_are_numbered() -> None:
    evs = parse(S + C + "bad" + A + "{}" + CE + C + "f:5" + A + "{}" + CE + C + "g:6" + A + "{}"
                + CE + E)
    assert [(type(e).__name__, e.index) for e in evs if not isinstance(e, StreamDone)] == [
        ("CallMalformed", 0), ("CallStarted", 1), ("CallDone", 1), ("CallStarted", 2),
        ("CallDone", 2)]
    bad = next(e for e in evs if isinstance(e, CallMalformed))
    assert (bad.id, bad.name) == (None, None)


VOCAB = [S, E, C, A, CE, "<|tool_call_section_begin|>", "<|tool_call_section_end|>",
         "<|tool_call", "<|tool_calls_section_", "_end|>", "|>", "<|", "functions.", "f", "g",
         ":0", ":", ".", "{", "}", "[", "]", '"', '"a"', ":", ",", " ", "\n", "1", "true",
         "null", "\\", '{"a": 1}', '{"code": "x\\n', "rm"]


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_garbage(data: st.DataObject) -> None:
    text = "".join(data.draw(st.lists(st.sampled_from(VOCAB), max_size=30)))
    if data.draw(BOOL):
        text = S + C + "functions.f:0" + A + text
    kw: dict[str, Any] = {"streams": {"f": {"code": "line"}}, "tools": ["f", "g"]}
    whole = parse(text, **kw)
    check_grammar(whole)
    events = parse(split(text, draw_cuts(data, text)), **kw)
    check_grammar(events)
    assert normalize(events) == normalize(whole)    # reasons too, however it is split
    assert all(e.reason and "parser error" not in e.reason for e in events
               if isinstance(e, CallMalformed))


CHUNK = ("abcdefgh" * 8)[:-2] + "\\n"      # 64 characters of JSON text: one line of code


def big_stream(n_chunks: int) -> Iterator[str]:
    yield "Run." + S + C + "functions.python:0" + A + '{"code": "'
    for i in range(n_chunks):   # a fresh string each time, so that keeping it costs memory
        yield CHUNK * 1023 + f"{i:062d}\\n"
    yield '"}' + CE + E + "bye"


def test_50mb_argument_is_not_buffered() -> None:
    p = KimiK2Parser(id_prefix="t", streams=STREAMS)
    kinds: dict[str, int] = {}
    tracemalloc.start()
    try:
        for delta in big_stream(50 * 1024 * 1024 // (len(CHUNK) * 1024)):
            for e in p.feed(delta):
                kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        for e in p.close():
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kinds.get("CallMalformed") == 1 and "CallDone" not in kinds, kinds
    assert kinds["Text"] == 2 and kinds["TextChunk"] > 100_000
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_linear_time() -> None:
    def per_char(n: int) -> float:
        args = json.dumps({"xs": [f"item <|tool_c {i}" for i in range(n)], "code": "x\n" * n})
        text = "ok" + S + "".join(C + f"functions.f:{i}" + A + args + CE for i in range(3)) + E
        best = float("inf")
        for _ in range(3):
            p = KimiK2Parser(streams={"f": {"code": "line"}})
            t0 = time.perf_counter()
            evs = [e for i in range(0, len(text), 4) for e in p.feed(text[i:i + 4])] + p.close()
            best = min(best, (time.perf_counter() - t0) / len(text))
        assert sum(isinstance(e, CallDone) for e in evs) == 3
        return best

    small, big = per_char(1000), per_char(4000)
    assert big < 1.5 * small, (small, big)      # 4x the input in < 6x the time


# -- against vLLM's own kimi_k2 parser ----------------------------------------------------------

@pytest.fixture(scope="module")
def vllm_kimi(bundled_model: pathlib.Path) -> Any:
    """vLLM's ``kimi_k2`` tool parser, a tokenizer that knows Kimi's markers as special tokens
    (the bundled SmolLM2's, with them added: vLLM finds the markers by token id when
    streaming), and a request with tools."""
    try:
        from transformers import AutoTokenizer
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.tool_parsers import ToolParserManager
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
        pytest.skip(f"vllm is not importable ({type(e).__name__}: {e})")
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model))
    tokenizer.add_special_tokens({"additional_special_tokens": [S, E, C, A, CE]})
    cls = ToolParserManager.get_tool_parser("kimi_k2")
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
             for n in ["python", "search", "get_weather", "ns.tool", "a-b"]]
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                                    tools=tools)
    return cls, tokenizer, request


def marker_safe_cuts(text: str, rng: random.Random) -> list[str]:
    """Deltas as a detokenizer gives them: each marker (one special token) whole."""
    inside = {j for m in MARKERS for i in range(len(text)) if text.startswith(m, i)
              for j in range(i + 1, i + len(m))}
    cuts = [c for c in rng.sample(range(1, len(text)), min(len(text) - 1, len(text) // 3))
            if c not in inside]
    return split(text, cuts)


def vllm_stream(cls: Any, tokenizer: Any, request: Any, pieces: list[str]
                ) -> tuple[list[tuple[str, str]], list[str], list[list[int]]]:
    """vLLM's streamed (id, name) and arguments per call, and after each delta how long each
    call's streamed arguments were."""
    parser = cls(tokenizer, request.tools)
    heads: list[tuple[str, str]] = []
    args: list[str] = []
    lengths: list[list[int]] = []
    prev, prev_ids = "", list[int]()
    for piece in pieces:
        ids = tokenizer.encode(piece, add_special_tokens=False)
        cur, cur_ids = prev + piece, prev_ids + ids
        msg = parser.extract_tool_calls_streaming(prev, cur, piece, prev_ids, cur_ids, ids,
                                                  request)
        prev, prev_ids = cur, cur_ids
        for tc in (msg.tool_calls if msg is not None and msg.tool_calls else []):
            while len(args) <= tc.index:
                args.append("")
                heads.append(("", ""))
            if tc.id:
                heads[tc.index] = (tc.id, heads[tc.index][1])
            if tc.function is not None and tc.function.name:
                heads[tc.index] = (heads[tc.index][0], tc.function.name)
            if tc.function is not None and tc.function.arguments:
                args[tc.index] += tc.function.arguments
        lengths.append([len(a) for a in args])
    return heads, args, lengths


@pytest.mark.vllm
@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_same_calls_as_vllm(vllm_kimi: Any, data: st.DataObject) -> None:
    cls, tokenizer, request = vllm_kimi
    text, expected, _, content = draw_message(data, vllm_safe=True)
    ours = done_calls(parse(text))
    same_json(ours, expected)
    info = cls(tokenizer, request.tools).extract_tool_calls(text, request)
    theirs = [(c.id, c.function.name, json.loads(c.function.arguments))
              for c in (info.tool_calls if info.tools_called else [])]
    same_json(theirs, ours)
    # text before the calls: vLLM drops it when it is only whitespace (ours: Text as it is)
    assert (info.content or "") == (content if content.strip() else "")


@pytest.mark.vllm
@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_streamed_fields_no_later_than_vllm(vllm_kimi: Any, data: st.DataObject) -> None:
    """Each top-level argument is final in our events no later than vLLM's streamed arguments
    hold all of its text; the streamed calls, ids and arguments are the same."""
    cls, tokenizer, request = vllm_kimi
    text, expected, finals, _ = draw_message(data, vllm_safe=True)
    pieces = marker_safe_cuts(text, random.Random(data.draw(st.integers(0, 2 ** 32))))
    parser = KimiK2Parser(id_prefix="t")
    ours: dict[tuple[int, str], int] = {}
    for d, piece in enumerate(pieces):
        for e in parser.feed(piece):
            if isinstance(e, FieldDone) and len(e.path) == 1:
                ours[e.index, str(e.path[0])] = d
    parser.close()
    heads, streamed, lengths = vllm_stream(cls, tokenizer, request, pieces)
    assert heads == [(i, n) for i, n, _ in expected]
    same_json([json.loads(a) for a in streamed], [a for _, _, a in expected])
    starts = [i + len(A) for i in range(len(text)) if text.startswith(A, i)]
    for index, (_, _, args) in enumerate(expected):
        lead = text.index(streamed[index], starts[index]) - starts[index]   # vLLM may strip
        for key, final in finals[index].items():
            need = final - starts[index] - lead
            theirs = next((d for d, ls in enumerate(lengths)
                           if index < len(ls) and ls[index] >= need), len(pieces))
            assert ours[index, key] <= theirs, (index, key, pieces)
