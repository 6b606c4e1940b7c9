"""DeepSeek V3 / R1 / V3.1 tool calls (``DeepSeekV3Parser``): the chat templates' rendering
under any tokenization, each field final as early as its JSON allows, hostile input, and the
same calls as vLLM's own ``deepseek_v3`` and ``deepseek_v31`` parsers."""

from __future__ import annotations

import functools
import json
import pathlib
import random
import re
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parsing_support import (
    chars,
    check_grammar,
    code_text,
    draw_cuts,
    draw_dumps,
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
    StreamDone,
    Text,
    TextChunk,
)
from conveyor_integrations.parsing.deepseek import DeepSeekV3Parser

SETTINGS = settings(max_examples=250, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BEGIN, END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CB, CE, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
EOS = "<｜end▁of▁sentence｜>"
MARKERS = (BEGIN, END, CB, CE, SEP, EOS)

# -- the chat templates ------------------------------------------------------------------------
# The assistant-tool-call branch of each official chat template, transcribed (the prompt's
# "<｜Assistant｜>" token, which comes before the generated text, left out):
# DeepSeek-V3 (and R1), tokenizer_config.json "chat_template" of deepseek-ai/DeepSeek-V3:
V3_TEMPLATE = (
    "{%- set ns = namespace(is_first=false) -%}"
    "{%- for tool in message['tool_calls'] -%}"
    "{%- if not ns.is_first -%}"
    "{%- if message['content'] is none -%}"
    "{{- '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>'"
    " + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments']"
    " + '\\n' + '```' + '<｜tool▁call▁end｜>' -}}"
    "{%- else -%}"
    "{{- message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type']"
    " + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n'"
    " + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>' -}}"
    "{%- endif -%}"
    "{%- set ns.is_first = true -%}"
    "{%- else -%}"
    "{{- '\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>'"
    " + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments']"
    " + '\\n' + '```' + '<｜tool▁call▁end｜>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{{- '<｜tool▁calls▁end｜><｜end▁of▁sentence｜>' -}}")
# DeepSeek-V3.1 (V3.2-Exp's is the same), tokenizer_config.json of deepseek-ai/DeepSeek-V3.1:
V31_TEMPLATE = (
    "{%- set ns = namespace(is_first=false) -%}"
    "{%- for tool in message['tool_calls'] -%}"
    "{%- if not ns.is_first -%}"
    "{%- if message['content'] is none -%}"
    "{{- '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['function']['name']"
    " + '<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁end｜>' -}}"
    "{%- else -%}"
    "{{- message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'"
    " + tool['function']['name'] + '<｜tool▁sep｜>' + tool['function']['arguments']"
    " + '<｜tool▁call▁end｜>' -}}"
    "{%- endif -%}"
    "{%- set ns.is_first = true -%}"
    "{%- else -%}"
    "{{- '<｜tool▁call▁begin｜>' + tool['function']['name'] + '<｜tool▁sep｜>'"
    " + tool['function']['arguments'] + '<｜tool▁call▁end｜>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{{- '<｜tool▁calls▁end｜><｜end▁of▁sentence｜>' -}}")


@functools.cache
def templates() -> dict[str, Any]:
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment(autoescape=False)    # renders model text, not HTML
    return {"v3": env.from_string(V3_TEMPLATE), "v31": env.from_string(V31_TEMPLATE)}


Call = tuple[str, dict[str, Any], str]          # name, args, the arguments as the model wrote
_DEC = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def value_finals(args_json: str) -> dict[str, int]:
    """Offset in ``args_json`` of the character that makes each top-level value final: its
    last, or for a number the delimiter after it."""
    out: dict[str, int] = {}
    i = _WS.match(args_json, args_json.index("{") + 1).end()  # type: ignore[union-attr]
    while args_json[i] != "}":
        key, i = _DEC.raw_decode(args_json, i)
        i = _WS.match(args_json, _WS.match(args_json, i).end() + 1).end()  # type: ignore
        value, end = _DEC.raw_decode(args_json, i)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        out[key] = end if number else end - 1
        i = _WS.match(args_json, end).end()  # type: ignore[union-attr]
        if args_json[i] == ",":
            i = _WS.match(args_json, i + 1).end()  # type: ignore[union-attr]
    return out


def render(form: str, content: str | None, calls: list[Call]
           ) -> tuple[str, list[dict[str, int]], list[int]]:
    """The message as the template writes it; per call where each value is final, and where
    each call's ``<｜tool▁call▁end｜>`` ends."""
    message = {"role": "assistant", "content": content, "tool_calls": [
        {"type": "function", "function": {"name": n, "arguments": a}} for n, _, a in calls]}
    text = templates()[form].render(message=message)
    finals, ends = [], []
    at = text.index(BEGIN)
    for _, _, args_json in calls:
        at = text.index(args_json, at)
        finals.append({k: at + off for k, off in value_finals(args_json).items()})
        at += len(args_json)
        ends.append(text.index(CE, at) + len(CE))
    return text, finals, ends


LOOKALIKES = ["<", "<｜", "｜>", CB, CE, SEP, BEGIN[:-2], "<｜tool▁calls▁beg", "```json", "```",
              "\n", "function", "<|tool▁calls▁begin|>", EOS[:-1]]
marker_text = st.lists(st.one_of(st.text(chars, max_size=6), st.sampled_from([*LOOKALIKES,
                                                                              *MARKERS])),
                       max_size=4).map("".join)
PROSE = st.lists(st.one_of(st.text(chars, max_size=5), st.sampled_from(LOOKALIKES)),
                 max_size=4).map("".join).filter(lambda s: BEGIN not in s and EOS not in s)
VALUES = st.one_of(json_values, marker_text)
KEYS = st.one_of(st.text(chars, max_size=6), st.sampled_from(["q", "code", "k", CE, SEP]))
NAMES = st.sampled_from(["python", "search", "get_weather", "function", "ns.tool-x",
                         "mcp__fs__read"])
FORMS = st.sampled_from(["v3", "v31"])
UNITS = st.sampled_from(["line", "statement", "raw"])
TAILS = st.sampled_from(["", "\n", " Done.", "\n\nAnything else?", "<｜tool▁c", "<｜end"])
BOOL = st.booleans()
STREAMS_OF = {"python": "code", "search": "q"}


def draw_calls(data: st.DataObject, vllm_safe: bool = False) -> list[Call]:
    calls = []
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(NAMES)
        args = data.draw(st.dictionaries(KEYS, VALUES, max_size=4))
        if name == "python":
            args["code"] = data.draw(code_text)
        if vllm_safe:     # vLLM's regexes have no DOTALL: a pretty-printed JSON never matches
            args_json = json.dumps(args, ensure_ascii=data.draw(BOOL))
        else:
            args_json = draw_dumps(data, args)
        calls.append((name, args, args_json))
    return calls


def parser(unit: str = "line", **kw: Any) -> DeepSeekV3Parser:
    streams = {tool: {field: unit} for tool, field in STREAMS_OF.items()}
    return DeepSeekV3Parser(id_prefix="t", streams=streams, **kw)


def same(got: Any, want: Any) -> None:
    assert json.dumps(got) == json.dumps(want)      # 1 is not 1.0, -0.0 is not 0.0


@SETTINGS
@given(st.data())
def test_template_rendering_any_tokenization(data: st.DataObject) -> None:
    form, unit = data.draw(FORMS), data.draw(UNITS)
    content = data.draw(st.none() | PROSE)
    calls = draw_calls(data)
    text, finals, _ = render(form, content, calls)
    if not data.draw(BOOL):             # the server dropped the special end-of-sentence token
        text = text.removesuffix(EOS)
    tail = data.draw(TAILS)
    text += tail
    whole = feed_all(parser(unit), [text])
    check_grammar(whole)
    done = [e for e in whole if isinstance(e, CallDone)]
    same([(e.name, e.args) for e in done], [(n, json.loads(a)) for n, _, a in calls])
    assert [e.index for e in done] == list(range(len(calls)))
    assert not any(isinstance(e, CallMalformed) for e in whole)
    assert "".join(e.text for e in whole if isinstance(e, Text)) == (content or "") + tail
    for e in whole:
        if isinstance(e, TextChunk):
            assert e.path == (STREAMS_OF[done[e.index].name],)
    for _ in range(4):
        pieces = split(text, draw_cuts(data, text))
        p = parser(unit)
        events: list[Event] = []
        seen = 0
        for piece in pieces:
            seen += len(piece)
            for e in p.feed(piece):
                events.append(e)
                if isinstance(e, FieldDone) and len(e.path) == 1:
                    # no later than the delta holding the character that makes it final
                    assert seen - len(piece) <= finals[e.index][str(e.path[0])], (e, pieces)
        events += p.close()
        check_grammar(events)
        assert normalize(events) == normalize(whole), pieces
        assert sum(isinstance(e, FieldDone) and len(e.path) == 1 for e in events) == \
            sum(len(f) for f in finals)


def test_documented_example() -> None:
    text = ("I'll run it." + BEGIN + CB + "function" + SEP + "python\n```json\n"
            '{"code": "for i in range(2):\\n    print(i)\\nx = 1", "timeout": 30}\n```' + CE
            + "\n" + CB + "search" + SEP + '{"q": "deep \\"seek\\""}' + CE + END + EOS)
    evs = feed_all(parser("statement"), list(text))
    check_grammar(evs)
    code = "for i in range(2):\n    print(i)\nx = 1"
    assert normalize(evs) == [
        Text("I'll run it."), CallStarted(0, "call_t_0", "python"),
        TextChunk(0, ("code",), code), FieldDone(0, ("code",), code),
        FieldDone(0, ("timeout",), 30),
        CallDone(0, "call_t_0", "python", {"code": code, "timeout": 30}),
        CallStarted(1, "call_t_1", "search"), TextChunk(1, ("q",), 'deep "seek"'),
        FieldDone(1, ("q",), 'deep "seek"'), CallDone(1, "call_t_1", "search",
                                                      {"q": 'deep "seek"'}), StreamDone()]
    pieces = [e.text for e in evs if isinstance(e, TextChunk) and e.index == 0]
    assert pieces == ["for i in range(2):\n    print(i)\n", "x = 1"]   # statement by statement


def test_each_field_at_its_last_character() -> None:
    args = '{"s": "ab", "n": 12, "t": true, "l": [1, 2], "d": {"k": null}, "z": 0}'
    for head, name_end in (("f" + SEP, "f" + SEP), ("function" + SEP + "f\n```json\n",
                                                  "function" + SEP + "f\n")):
        text = BEGIN + CB + head + args
        p = DeepSeekV3Parser()
        got: dict[Any, int] = {}
        for i, ch in enumerate(text):
            for e in p.feed(ch):
                if isinstance(e, FieldDone):
                    got[e.path] = i - len(text) + len(args)
                elif isinstance(e, CallStarted):    # at the name's last character
                    assert i == len(BEGIN + CB + name_end) - 1
        assert got[("s",)] == args.index('"ab"') + 3
        assert got[("n",)] == args.index("12") + 2       # at the "," after it
        assert got[("t",)] == args.index("true") + 3
        assert got[("l",)] == args.index("2]") + 1
        assert got[("d",)] == args.index("null}") + 4
        assert got[("z",)] == len(args) - 1               # at the closing brace


def test_mixed_forms_and_layout() -> None:
    text = ("a" + BEGIN + "\n" + CB + "f" + SEP + " {}\n" + CE + "\n\n" + CB + "function" + SEP
            + "g\n```json\n{\"x\": [1]}\n```" + CE + "  " + CB + "function" + SEP + '{"y": 2}'
            + CE + CB + "h" + SEP + CE + "\n" + END + " b")
    for pieces in ([text], list(text)):
        evs = feed_all(DeepSeekV3Parser(), pieces)
        check_grammar(evs)
        assert [(e.name, e.args) for e in evs if isinstance(e, CallDone)] == [
            ("f", {}), ("g", {"x": [1]}), ("function", {"y": 2}), ("h", {})]
        assert "".join(e.text for e in evs if isinstance(e, Text)) == "a b"


def test_end_of_sentence_and_text_around_sections() -> None:
    # EOS is dropped outside calls and ends a section left open; other text stays text
    text = (BEGIN + CB + "f" + SEP + "{}" + CE + EOS + "after" + EOS + " more " + BEGIN + CB
            + "g" + SEP + "{}" + CE + "stray " + END)
    for pieces in ([text], list(text)):
        evs = normalize(feed_all(DeepSeekV3Parser(), pieces))
        assert [(e.name, e.args) for e in evs if isinstance(e, CallDone)] == [("f", {}),
                                                                             ("g", {})]
        assert [e.text for e in evs if isinstance(e, Text)] == ["after more ", "stray "]


# -- hostile input -------------------------------------------------------------------------

FULL = {
    "v3": ("Checking." + BEGIN + CB + "function" + SEP + "search\n```json\n"
           '{"q": "it\'s \\"x\\" <｜tool▁call▁end｜>", "k": [1, {"n": null}], "b": true}\n```'
           + CE + "\n" + CB + "function" + SEP + "python\n```json\n"
           '{"code": "a = 1\\nprint(a)\\n", "t": -1.5e3}\n```' + CE + END + EOS),
    "v31": ("Checking." + BEGIN + CB + "search" + SEP + '{"q": "<｜tool▁sep｜> é", "k": 7}' + CE
            + CB + "python" + SEP + '{"code": "x\\ny", "t": false}' + CE + END + " ok"),
}


@pytest.mark.parametrize("form", sorted(FULL))
def test_truncated_at_every_prefix(form: str) -> None:
    full = FULL[form]
    ends = [m.end() for m in re.finditer("(?<=[`}])" + re.escape(CE), full)]  # not in strings
    for cut in range(len(full) + 1):
        prefix = full[:cut]
        for pieces in ([prefix], list(prefix)):
            evs = feed_all(parser(), pieces)
            check_grammar(evs)
            done = {e.index for e in evs if isinstance(e, CallDone)}
            assert done == {i for i, end in enumerate(ends) if cut >= end}, prefix
            started = {e.index for e in evs if isinstance(e, CallStarted)}
            bad = [e for e in evs if isinstance(e, CallMalformed)]
            assert started - done <= {e.index for e in bad}, prefix
            assert all(e.reason.startswith("truncated call") for e in bad), (prefix, bad)


V31_GOOD = CB + "f" + SEP + '{"n": 1}' + CE


def v3(name: str, body: str) -> str:
    return CB + "function" + SEP + name + "\n```json\n" + body + "\n```" + CE


@pytest.mark.parametrize("bad,reason", [
    (CB + "rm" + SEP + '{"p": "/ <｜tool▁call▁end｜>"}' + CE, "unknown tool 'rm'"),
    (v3("rm", '{"p": "<｜tool▁call▁end｜>"}'), "unknown tool 'rm'"),
    (CB + "f" + SEP + '{"n": 1, "n": 2}' + CE, "duplicate key 'n'"),
    (CB + "f" + SEP + "{'n': 1}" + CE, "expected a string key"),
    (CB + "f" + SEP + '{"n": 01}' + CE, "invalid number"),
    (CB + "f" + SEP + "[1, 2]" + CE, "expected a JSON object"),
    (CB + "f" + SEP + '"x"' + CE, "expected a JSON object"),
    (CB + "f" + SEP + '{"a": [[[1]]]}' + CE, "nesting deeper than 3 levels"),
    (CB + "f" + SEP + '{"n": 1} junk' + CE, "unexpected text after the arguments JSON"),
    (CB + "f" + SEP + '{"n": 1}' + CB + "g" + SEP + "{}" + CE, "missing <｜tool▁call▁end｜>"),
    (CB + "f" + SEP + "<b>" + CE, "expected the arguments JSON object"),
    (CB + "function" + SEP + "f\n" + '{"n": 1}\n```' + CE, "expected ```json after the tool"),
    (CB + "function" + SEP + "f\n```json\n" + '{"n": 1}' + CE, "missing closing ```"),
    (CB + "function" + SEP + "f\n```json\n" + '{"n": 1}\n' + CB + "f" + SEP + "{}" + CE,
     "missing closing ```"),
    (CB + "function" + SEP + "f\n```json\n" + '{"n": 1}\n```\n' + CB + "f" + SEP + "{}" + CE,
     "missing <｜tool▁call▁end｜>"),
    (CB + "function" + SEP + "f ```json\n{}\n```" + CE, "expected a newline after the tool name"),
    (CB + SEP + "{}" + CE, "empty tool name"),
    (CB + "get weather" + SEP + "{}" + CE, "expected <｜tool▁sep｜> after the tool name"),
    (CB + '{"name": "f"}' + CE, "expected <｜tool▁sep｜> after the tool name"),
    (CB + "f" * 300 + SEP + "{}" + CE, "tool name too long"),
])
def test_malformed_calls_then_recovery(bad: str, reason: str) -> None:
    text = "before " + BEGIN + bad + "\n" + V31_GOOD + END + " after"
    kw: dict[str, Any] = {"tools": ["f", "g"], "max_depth": 3}
    whole = feed_all(parser(**kw), [text])
    for pieces in ([text], list(text)):
        evs = feed_all(parser(**kw), pieces)
        check_grammar(evs)
        assert normalize(evs) == normalize(whole)
        malformed = [e for e in evs if isinstance(e, CallMalformed)]
        assert len(malformed) == 1 and reason in malformed[0].reason, malformed
        assert [e.args for e in evs if isinstance(e, CallDone)][-1:] == [{"n": 1}]
        assert "".join(e.text for e in evs if isinstance(e, Text)) == "before  after"


@pytest.mark.parametrize("text,reason", [
    (BEGIN + CB, "no <｜tool▁sep｜>"), (BEGIN + CB + "f", "no <｜tool▁sep｜>"),
    (BEGIN + CB + "function" + SEP, "no arguments"),
    (BEGIN + CB + "function" + SEP + "f", "the tool name is not complete"),
    (BEGIN + CB + "function" + SEP + "f\n``", "no ```json block"),
    (BEGIN + CB + "f" + SEP, "arguments JSON incomplete"),
    (BEGIN + CB + "f" + SEP + '{"a": "x', "arguments JSON incomplete"),
    (BEGIN + CB + "f" + SEP + '{"a": 1}', "no <｜tool▁call▁end｜>"),
    (BEGIN + CB + "f" + SEP + '{"a": 1}<｜tool▁call', "no <｜tool▁call▁end｜>"),
    (BEGIN + CB + "function" + SEP + "f\n```json\n{}\n`", "no closing ```"),
])
def test_unterminated_at_close(text: str, reason: str) -> None:
    for pieces in ([text], list(text)):
        evs = feed_all(parser(), pieces)
        check_grammar(evs)
        bad = [e.reason for e in evs if isinstance(e, CallMalformed)]
        assert len(bad) == 1 and bad[0].startswith("truncated call: ") and reason in bad[0], bad
        assert not any(isinstance(e, CallDone) for e in evs)


@pytest.mark.parametrize("text", [
    "a " + CB + "f" + SEP + "{}" + CE + " b",        # no calls section: text
    "<｜tool▁calls▁begin", "<｜tool▁calls▁begin|>", "<|tool▁calls▁begin|>x", "<｜", "<", "x <｜t",
    "<｜tool▁calls▁end｜> " + CE + SEP, "``` json ```", "<｜end▁of▁sentence", "<｜tool▁calls▁beg<",
])
def test_look_alikes_are_text(text: str) -> None:
    for pieces in ([text], list(text)):
        evs = feed_all(parser(), pieces)
        assert all(isinstance(e, Text) for e in evs[:-1]), evs
        assert "".join(e.text for e in evs[:-1]) == text  # type: ignore[union-attr]


def test_argument_limit_and_streamed_code_lines() -> None:
    p = parser("raw", max_arg_chars=1000)
    evs = feed_all(p, [BEGIN + CB + "python" + SEP + '{"code": "', "x" * 600, "y" * 600,
                       '"}' + CE + END + "after"])
    check_grammar(evs)
    assert [e.reason for e in evs if isinstance(e, CallMalformed)] == [
        "arguments exceed 1000 characters"]
    assert sum(len(e.text) for e in evs if isinstance(e, TextChunk)) < 1000
    assert evs[-2] == Text("after")
    code = "import os\nfor f in os.listdir():\n    print(f)\n"
    text = BEGIN + CB + "function" + SEP + "python\n```json\n" + json.dumps({"code": code}) \
        + "\n```" + CE + END
    evs = feed_all(parser("line"), list(text))
    assert [e.text for e in evs if isinstance(e, TextChunk)] == code.splitlines(keepends=True)


CHUNK = ("abcdefgh" * 127 + "\\n") * 64        # 64 KiB of JSON: 64 lines of code


def big_stream(n_chunks: int) -> Iterator[str]:
    yield BEGIN + CB + "function" + SEP + "python\n```json\n{\"code\": \""
    for i in range(n_chunks):   # a fresh string each time, so that keeping it costs memory
        yield CHUNK[:-10] + f"{i:08d}\\n"
    yield "\"}\n```" + CE + END + "bye"


def test_50mb_argument_is_not_buffered() -> None:
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
    assert kinds["Text"] == 1 and kinds["TextChunk"] > 7000   # lines, until the limit
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_linear_time() -> None:
    def per_char(n_items: int) -> float:
        body = json.dumps({"xs": [f"item {i} <｜" for i in range(n_items)], "code": "x\n" * n_items})
        text = "Ok." + BEGIN + CB + "function" + SEP + "python\n```json\n" + body + "\n```" + CE \
            + "\n" + CB + "f" + SEP + body + CE + END
        best = float("inf")
        for _ in range(3):
            p = parser("statement")
            t0 = time.perf_counter()
            evs = [e for i in range(0, len(text), 4) for e in p.feed(text[i:i + 4])] + p.close()
            best = min(best, (time.perf_counter() - t0) / len(text))
        assert [type(e).__name__ for e in evs[-2:]] == ["CallDone", "StreamDone"]
        return best

    small, big = per_char(500), per_char(8000)
    assert big < 4 * small, (small, big)


VOCAB = [*MARKERS, BEGIN + CB, CB + "f" + SEP, CB + "function" + SEP, "function", "f", "rm",
         "\n", "```json", "```", "`", "{", "}", '"a"', ":", "1", " ", "[", "]", "<", "｜", ">",
         "<｜tool▁", "｜>", "x", '"', "\\", "true", ","]


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_garbage(data: st.DataObject) -> None:
    text = "".join(data.draw(st.lists(st.sampled_from(VOCAB), max_size=30)))
    if data.draw(BOOL):
        text = BEGIN + text
    kw: dict[str, Any] = {"tools": ["f", "function", "python"], "max_depth": 3}
    unit = data.draw(UNITS)
    whole = feed_all(parser(unit, **kw), [text])
    check_grammar(whole)
    events = feed_all(parser(unit, **kw), split(text, draw_cuts(data, text)))
    check_grammar(events)
    assert normalize(events) == normalize(whole)
    assert all(e.reason for e in events if isinstance(e, CallMalformed))


# -- against vLLM's own deepseek_v3 / deepseek_v31 parsers ---------------------------------------

VLLM_NAMES = {"v3": "deepseek_v3", "v31": "deepseek_v31"}
VLLM_PROSE = st.sampled_from(["", "Sure.", "Let me look that up.\n\n", "Two calls: "])
_MARKER_RE = re.compile("|".join(map(re.escape, MARKERS)))


@pytest.fixture(scope="module")
def vllm_deepseek(bundled_model: pathlib.Path) -> Any:
    """vLLM's two DeepSeek tool parsers, a tokenizer and a request. The parsers look the
    markers up as tokens: they are added as special tokens to (a copy in memory of) the
    bundled SmolLM2 tokenizer, no DeepSeek tokenizer being available offline."""
    try:
        from transformers import AutoTokenizer
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.tool_parsers import ToolParserManager
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
        pytest.skip(f"vllm is not importable ({type(e).__name__}: {e})")
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model))
    tokenizer.add_special_tokens({"additional_special_tokens": list(MARKERS)})
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
             for n in ("python", "search", "get_weather", "function", "ns.tool-x",
                       "mcp__fs__read")]
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                                    tools=tools)
    classes = {form: ToolParserManager.get_tool_parser(name) for form, name in VLLM_NAMES.items()}
    return classes, tokenizer, request


def vllm_message(data: st.DataObject, streaming: bool = False
                 ) -> tuple[str, str, str, list[Call]]:
    form = data.draw(FORMS)
    content = data.draw(VLLM_PROSE)
    calls = draw_calls(data, vllm_safe=True)
    # vLLM bugs with a marker's text inside a JSON string (ours is string content): the
    # non-greedy "(.*?)<｜tool▁call▁end｜>" of deepseek_v31 ends the arguments at it (that of
    # deepseek_v3 is anchored on "\n```" and does not); and both streaming parsers count
    # marker tokens and split the text at markers, so that any marker in a string loses
    # text or the whole call. A model emits the markers as its special tokens only, so these
    # calls are left out here (the template test has them).
    banned = MARKERS if streaming else (CE,) if form == "v31" else ()
    calls = [c for c in calls if not any(m in c[2] for m in banned)] or [("search", {}, "{}")]
    text, _, _ = render(form, content or None, calls)
    return form, content, text, calls


@pytest.mark.vllm
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_same_calls_as_vllm(vllm_deepseek: Any, data: st.DataObject) -> None:
    classes, tokenizer, request = vllm_deepseek
    form, content, text, calls = vllm_message(data)
    ours = feed_all(parser(), [text])
    got = [(e.name, e.args) for e in ours if isinstance(e, CallDone)]
    same(got, [(n, json.loads(a)) for n, _, a in calls])
    info = classes[form](tokenizer, request.tools).extract_tool_calls(text, request)
    assert info.tools_called
    same([(c.function.name, json.loads(c.function.arguments)) for c in info.tool_calls], got)
    assert (info.content or "") == content == "".join(
        e.text for e in ours if isinstance(e, Text))


def vllm_deltas(text: str, rng: random.Random) -> list[str]:
    """Random cuts, but each marker a delta of its own: a server streams a special token as
    one token (vLLM's parsers count marker token ids, so a marker split across deltas is
    never seen)."""
    cuts = set(rng.sample(range(1, len(text)), len(text) // 3))
    for m in _MARKER_RE.finditer(text):
        cuts -= set(range(m.start() + 1, m.end()))
        cuts |= {m.start(), m.end()}
    return split(text, cuts)


def vllm_stream(cls: Any, tokenizer: Any, request: Any, pieces: list[str]
                ) -> tuple[list[str], list[list[int]]]:
    """vLLM's streamed arguments per call, and after each delta how long each call's were."""
    parser_ = cls(tokenizer, request.tools)
    args: list[str] = []
    lengths: list[list[int]] = []
    prev, prev_ids = "", []
    for piece in pieces:
        ids = tokenizer.encode(piece, add_special_tokens=False)
        cur, cur_ids = prev + piece, prev_ids + ids
        msg = parser_.extract_tool_calls_streaming(prev, cur, piece, prev_ids, cur_ids, ids,
                                                   request)
        prev, prev_ids = cur, cur_ids
        for tc in (msg.tool_calls if msg is not None and msg.tool_calls else []):
            while len(args) <= tc.index:
                args.append("")
            fn = tc.function
            more = fn.get("arguments") if isinstance(fn, dict) else getattr(fn, "arguments", None)
            args[tc.index] += more or ""
        lengths.append([len(a) for a in args])
    return args, lengths


@pytest.mark.vllm
@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_streamed_fields_no_later_than_vllm(vllm_deepseek: Any, data: st.DataObject) -> None:
    """Each top-level argument is final in our events no later than vLLM's streamed argument
    text holds all of it (a number: and the character after it)."""
    classes, tokenizer, request = vllm_deepseek
    form, _, text, calls = vllm_message(data, streaming=True)
    pieces = vllm_deltas(text, random.Random(data.draw(st.integers(0, 2 ** 32))))
    p = parser()
    ours: dict[tuple[int, str], int] = {}
    for d, piece in enumerate(pieces):
        for e in p.feed(piece):
            if isinstance(e, FieldDone) and len(e.path) == 1:
                ours[e.index, str(e.path[0])] = d
    p.close()
    streamed, lengths = vllm_stream(classes[form], tokenizer, request, pieces)
    for index, (_, _, args_json) in enumerate(calls):
        if index >= len(streamed) or not args_json.startswith(streamed[index]):
            continue                  # vLLM streamed something else (see the report)
        for key, final in value_finals(args_json).items():
            theirs = next((d for d, ls in enumerate(lengths)
                           if index < len(ls) and ls[index] > final), len(pieces))
            assert ours[index, key] <= theirs, (key, pieces)
