"""Hostile input: never an exception, always a malformed call or plain text, bounded memory."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parsing_support import check_grammar, draw_cuts, feed_all, normalize, split

from conveyor_integrations.events import CallDone, CallMalformed, CallStarted, Text, TextChunk
from conveyor_integrations.parsing import get_parser

CALL = {"name": "python", "arguments": {"code": "x = 1\nprint(x)\n", "q": ["a\\", 1.5, None]}}

# How each JSON format wraps one call's JSON (the format's own framing).
WRAP: dict[str, Callable[[str], str]] = {
    "hermes": lambda js: f"<tool_call>{js}</tool_call>",
    "llama3_json": lambda js: js,
    "mistral": lambda js: f"[TOOL_CALLS][{js}]",
}


def openai_deltas(args_text: str, name: str = "python") -> list[Any]:
    return [{"tool_calls": [{"index": 0, "id": "c0", "function": {"name": name,
                                                                   "arguments": args_text}}]}]


@pytest.mark.parametrize("fmt", ["hermes", "llama3_json", "mistral", "openai"])
def test_truncated_at_every_prefix(fmt: str) -> None:
    if fmt == "openai":
        full = json.dumps(CALL["arguments"])
    else:
        full = WRAP[fmt](json.dumps(CALL))
    for cut in range(1, len(full)):
        prefix = full[:cut]
        parser = get_parser(fmt, id_prefix="t")
        evs = feed_all(parser, openai_deltas(prefix) if fmt == "openai" else [prefix])
        check_grammar(evs)
        started = {e.index for e in evs if isinstance(e, CallStarted)}
        done = {e.index for e in evs if isinstance(e, CallDone)}
        # mistral: a call is complete at its object's end, even if the list is not closed
        assert not done or (fmt == "mistral" and cut == len(full) - 1), prefix
        for i in started - done:
            assert any(isinstance(e, CallMalformed) and e.index == i for e in evs), prefix


@pytest.mark.parametrize("fmt", ["hermes", "llama3_json", "mistral", "openai"])
@pytest.mark.parametrize("bad", ['"\\x"', '"\\ud800"', '"\\udc00\\ud800"', '"a\x01"', "01",
                                 "NaN", "[1,]", "{1}", '"\\u12"', "tru", "-"])
def test_bad_values(fmt: str, bad: str) -> None:
    js = '{"name": "python", "arguments": {"v": ' + bad + "}}"
    args = '{"v": ' + bad + "}"
    deltas = openai_deltas(args) if fmt == "openai" else [WRAP[fmt](js)]
    for pieces in (deltas, [c for d in deltas for c in (d if isinstance(d, str) else [d])]):
        evs = feed_all(get_parser(fmt, id_prefix="t"), pieces)
        check_grammar(evs)
        assert any(isinstance(e, CallMalformed) for e in evs)
        assert not any(isinstance(e, CallDone) for e in evs)


@pytest.mark.parametrize("fmt", ["hermes", "llama3_json", "mistral", "openai", "plan"])
def test_unknown_tool_only_malformed(fmt: str) -> None:
    if fmt == "openai":
        deltas: list[Any] = openai_deltas('{"a": 1}', name="rm") + [
            {"tool_calls": [{"index": 0, "function": {"arguments": "garbage"}}]}]
    elif fmt == "plan":
        deltas = ['1. rm("/")\n']
    else:
        deltas = [WRAP[fmt](json.dumps({"name": "rm", "arguments": {"a": [1, {"b": "}"}]}}))]
    evs = feed_all(get_parser(fmt, id_prefix="t", tools=["python"]), deltas)
    assert [type(e).__name__ for e in evs] == ["CallMalformed", "StreamDone"]
    assert evs[0].reason == "unknown tool 'rm'"  # type: ignore[union-attr]


@pytest.mark.parametrize("fmt", ["hermes", "llama3_json", "mistral", "openai"])
def test_nesting_10000(fmt: str) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    if fmt == "openai":
        deltas: list[Any] = openai_deltas('{"a": ' + deep + "}")
    else:
        deltas = [WRAP[fmt]('{"name": "python", "arguments": {"a": ' + deep + "}}")]
        deltas.append(WRAP[fmt]('{"name": "python", "arguments": {}}').replace("[TOOL_CALLS]", ""))
    evs = feed_all(get_parser(fmt, id_prefix="t"), deltas)
    check_grammar(evs)
    bad = [e for e in evs if isinstance(e, CallMalformed)]
    assert len(bad) == 1 and "nesting deeper than 256" in bad[0].reason
    if fmt == "hermes":  # the next call still parses
        assert any(isinstance(e, CallDone) for e in evs)


def test_depth_limit_is_configurable() -> None:
    p = get_parser("hermes", max_depth=3, id_prefix="t")
    ok = '<tool_call>{"name": "f", "arguments": {"a": [[1]]}}</tool_call>'
    bad = '<tool_call>{"name": "f", "arguments": {"a": [[[1]]]}}</tool_call>'
    evs = feed_all(p, [ok, bad])
    assert [type(e).__name__ for e in evs if isinstance(e, (CallDone, CallMalformed))] == [
        "CallDone", "CallMalformed"]


# -- a 50 MB argument in 64 KiB chunks: memory stays bounded ------------------------------

CHUNK = "abcdefgh" * (64 * 1024 // 8)
N_CHUNKS = 50 * 1024 * 1024 // len(CHUNK)


def big_stream(fmt: str) -> Iterator[Any]:
    head = {"hermes": '<tool_call>{"name": "python", "arguments": {"code": "',
            "llama3_json": '{"name": "python", "parameters": {"code": "',
            "mistral": '[TOOL_CALLS][{"name": "python", "arguments": {"code": "',
            "openai": '{"code": "', "fenced_code": "```python\n"}[fmt]
    tail = {"hermes": '"}}</tool_call>', "llama3_json": '"}}', "mistral": '"}}]',
            "openai": '"}', "fenced_code": "\n```\n"}[fmt]
    def pieces() -> Iterator[str]:
        yield head
        for i in range(N_CHUNKS):  # a fresh string each time, so that keeping it costs memory
            yield CHUNK[:-8] + f"{i:08d}"
        yield tail
        yield "bye"
    for p in pieces():
        yield openai_deltas(p)[0] if fmt == "openai" else p


@pytest.mark.parametrize("fmt", ["hermes", "openai", "llama3_json", "mistral", "fenced_code"])
def test_50mb_argument_is_not_buffered(fmt: str) -> None:
    kw: dict[str, Any] = {"id_prefix": "t"}
    if fmt != "fenced_code":
        kw["streams"] = {"python": {"code": "line"}}
    parser = get_parser(fmt, **kw)
    kinds: dict[str, int] = {}
    time.perf_counter()
    tracemalloc.start()
    try:
        for delta in big_stream(fmt):
            for e in parser.feed(delta):
                kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        for e in parser.close():
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kinds.get("CallMalformed") == 1 and "CallDone" not in kinds, kinds
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_raw_streamed_field_beyond_limit_reports_malformed() -> None:
    p = get_parser("hermes", id_prefix="t", max_arg_chars=1000,
                   streams={"python": {"code": "raw"}})
    evs = feed_all(p, ['<tool_call>{"name": "python", "arguments": {"code": "',
                       "x" * 600, "y" * 600, '"}}</tool_call>after'])
    check_grammar(evs)
    assert isinstance(evs[-3], CallMalformed) and "exceed 1000" in evs[-3].reason
    assert sum(len(e.text) for e in evs if isinstance(e, TextChunk)) < 1000
    assert evs[-2] == Text("after")


# -- look-alike tags -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,text", [
    ("hermes", "a <tool_ box> <tool_call <tool_callx> </tool_call> <tool"),
    ("mistral", "a [TOOL_ [TOOL_CALL] [TOOL_CALLSX [TOOL"),
    ("llama3_json", "<|python_tug|> {"),
    ("llama3_json", "<|python"),
    ("fenced_code", "``python\nx\n`` ```python inline``` ~~"),
    ("plan", "1 search(x)\n1.search\n1. search x\nThought: 2. f(\n"),
])
def test_look_alikes_are_text(fmt: str, text: str) -> None:
    for pieces in ([text], list(text)):
        evs = feed_all(get_parser(fmt), pieces)
        assert all(isinstance(e, Text) for e in evs[:-1]), evs
        assert "".join(e.text for e in evs[:-1]) == text  # type: ignore[union-attr]


# -- random garbage: no exception, grammar holds, chunking does not matter -------------------

VOCAB = {
    "hermes": ["<tool_call>", "</tool_call>", "<tool_", "{", "}", '"name"', '"arguments"',
               '"python"', ":", ",", '"', "\\", "\\u", "d83d", "[", "]", "1", "x", " ", "\n",
               '{"name": "python", "arguments": {"code": "a\\nb"}}', "null", "<"],
    "llama3_json": ["<|python_tag|>", "{", "}", '"name"', '"parameters"', '"f"', ":", ",",
                    ";", '"', "\\", "[", "]", "1", " ", "\n", "true",
                    '{"name": "f", "parameters": {"a": 1}}'],
    "mistral": ["[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "f", "{", "}", "[", "]", '"name"',
                '"arguments"', '"f"', ":", ",", '"', " ", "1", "x"],
    "fenced_code": ["```", "```python\n", "~~~", "\n", "x = 1", "if x:", "    ", "`", "py",
                    "```js\n", " "],
    "plan": ["1.", "2.", " ", "search(", '"$1"', "'x'", ")", "\n", "join()", "Thought:",
             ",", "k=", "[", "]", "{", "}", "$", "${2}", "None", "(", "1"],
}


@pytest.mark.parametrize("fmt", sorted(VOCAB))
@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_garbage(fmt: str, data: st.DataObject) -> None:
    text = "".join(data.draw(st.lists(st.sampled_from(VOCAB[fmt]), max_size=25)))
    kw: dict[str, Any] = {"id_prefix": "t", "streams": {"python": {"code": "statement"}},
                          "tools": ["python", "f", "search"]}
    if fmt == "fenced_code":
        kw.pop("streams")
    whole = feed_all(get_parser(fmt, **kw), [text])
    check_grammar(whole)
    pieces = split(text, draw_cuts(data, text))
    events = feed_all(get_parser(fmt, **kw), pieces)
    check_grammar(events)
    assert normalize(events) == normalize(whole)


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_openai_garbage(data: st.DataObject) -> None:
    frag = st.sampled_from(['{"a": ', "1", "}", '"', "\\", "]", " ", "x", "{", None, ""])
    deltas = data.draw(st.lists(st.fixed_dictionaries({
        "content": st.sampled_from([None, "", "hi"]),
        "tool_calls": st.lists(st.fixed_dictionaries({
            "index": st.sampled_from([0, 1, 2, None]),
            "id": st.sampled_from([None, "a"]),
            "function": st.fixed_dictionaries({"name": st.sampled_from([None, "f", "", "g"]),
                                               "arguments": frag})}), max_size=2)}),
        max_size=12))
    evs = feed_all(get_parser("openai", id_prefix="t", tools=["f"]), deltas)
    check_grammar(evs)
