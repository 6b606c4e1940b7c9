"""Every registered parser under arbitrary input: nothing escapes ``feed`` or ``close``, and the
events stay well-formed (the grammar of ``tests/parsing/parsing_support.check_grammar``).

``tests/parsing/test_parsing_hostile.py`` covers format-aware garbage (each format's own tokens)
and chunking invariance; here the input is anything: any text, any JSON-like value, any object.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor_integrations.events import CallDone, CallMalformed, CallStarted, Event, StreamDone
from conveyor_integrations.parsing import PARSERS, get_parser

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parsing"))
from parsing_support import check_grammar, split

TOKENS = ["<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]",
          "<|python_tag|>", "```python\n", "```", "~~~", "\n", "1. ", "2. ", "search(", ")",
          "$1", "${1}", "join()", '{"name": "python", "arguments": {"code": "', '"}}', "{", "}",
          "[", "]", '"', "\\", "\\u", "\\ud800", ":", ",", " ", "\x00", "\ud800", "😀",
          '"name"', '"arguments"', '"parameters"', '"code"', "null", "1e999", "-0", "9" * 400]
text = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=8)), max_size=30).map("".join)

KEYS = ["content", "tool_calls", "index", "id", "type", "function", "name", "arguments",
        "role", "x"]
leaf = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.integers(),
                 st.floats(), st.text(max_size=6), st.sampled_from(TOKENS), st.binary(max_size=4))
json_like = st.recursive(
    leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                  st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25)
tool_call = st.fixed_dictionaries({}, optional={
    "index": json_like, "id": json_like, "type": json_like,
    "function": st.one_of(json_like, st.fixed_dictionaries({}, optional={
        "name": st.one_of(st.sampled_from(["python", "f", ""]), json_like),
        "arguments": st.one_of(text, json_like)}))})
delta = st.one_of(
    json_like, text,
    st.fixed_dictionaries({}, optional={"content": st.one_of(text, json_like),
                                        "tool_calls": st.one_of(st.lists(tool_call, max_size=3),
                                                                json_like)}))

OPTIONS: list[dict[str, Any]] = [
    {},
    {"tools": ["python", "f", "search"], "streams": {"python": {"code": "line"}}},
    {"streams": {"python": {"code": "statement"}, "f": {"a": "raw"}}, "max_arg_chars": 40,
     "max_depth": 3},
]


class Weird:
    """An object with the attributes a delta may have, of the wrong types."""

    content = 5
    tool_calls: ClassVar[list[object]] = [object()]


def check(events: list[Event]) -> None:
    check_grammar(events)
    for e in events:
        if isinstance(e, (CallStarted, CallDone, CallMalformed)):
            assert isinstance(e.index, int) and e.index >= 0
        if isinstance(e, CallDone):
            assert isinstance(e.args, dict) and isinstance(e.name, str)
        if isinstance(e, CallMalformed):
            assert isinstance(e.reason, str) and e.reason


def run(fmt: str, opts: dict[str, Any], deltas: list[Any]) -> list[Event]:
    parser = get_parser(fmt, id_prefix="t", **opts)
    out: list[Event] = []
    for d in deltas:
        out += parser.feed(d)
    out += parser.close()
    assert parser.close() == [] and parser.feed("more") == []    # closed: nothing, no error
    return out


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_text_any_chunking(fmt: str, data: st.DataObject) -> None:
    body = data.draw(text)
    cuts = data.draw(st.lists(st.integers(0, max(len(body), 1)), max_size=12))
    opts = data.draw(st.sampled_from(OPTIONS))
    check(run(fmt, opts, split(body, cuts)))


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_like_delta(fmt: str, data: st.DataObject) -> None:
    deltas = data.draw(st.lists(delta, max_size=8))
    opts = data.draw(st.sampled_from(OPTIONS))
    check(run(fmt, opts, deltas))


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@pytest.mark.parametrize("bad", [
    {"tool_calls": 5}, {"tool_calls": [{"index": [1]}]}, {"tool_calls": [{"index": {}}]},
    {"tool_calls": "abc"}, {"tool_calls": [5, None, "x"]}, {"tool_calls": [{"function": 3}]},
    {"tool_calls": [{"index": 0, "function": {"name": ["f"], "arguments": {"a": 1}}}]},
    {"tool_calls": [{"index": float("nan"), "function": {"name": "f"}}]},
    {"content": ["a"]}, 5, None, [1, 2], b"bytes", object(), Weird(),
])
def test_reported_cases(fmt: str, bad: Any) -> None:
    events = run(fmt, {}, [bad, {"tool_calls": [{"index": 0, "function": {"name": "f"}}]}, bad])
    check(events)
    assert isinstance(events[-1], StreamDone)
