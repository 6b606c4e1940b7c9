"""Property tests: any split of a stream into deltas gives the same events, and every complete
call's arguments equal ``json.loads`` of its JSON text."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parsing_support import (
    chars,
    check_grammar,
    code_text,
    draw_cuts,
    draw_dumps,
    feed_all,
    json_args,
    normalize,
    split,
)

from conveyor_integrations.events import CallDone, Event
from conveyor_integrations.parsing import get_parser

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
UNITS = st.sampled_from(["line", "statement", "raw"])
NAMES = st.sampled_from(["python", "search", "f"])
WS = st.sampled_from(["", "\n", " ", "\n  \n"])


def prose(forbidden: str, extra: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(st.text(chars, max_size=4), st.sampled_from(extra)),
                    max_size=4).map("".join).filter(lambda s: forbidden not in s)


HERMES_PROSE = prose("<tool_call>", ["<", "<tool_", "</tool_call>", "<tool_box>"])
HERMES_TAIL = prose("<tool_call>", ["<", "<tool_call", "\n"])
MISTRAL_PROSE = prose("[TOOL_CALLS]", ["[", "[TOOL_", "]"])
COUNT_0_3 = st.integers(0, 3)
COUNT_1_3 = st.integers(1, 3)
BOOL = st.booleans()
ARG_KEYS = st.sampled_from(["arguments", "parameters"])
SHORT_TEXT = st.text(chars, max_size=10)


def call_args(data: st.DataObject, name: str) -> dict[str, Any]:
    args = data.draw(json_args)
    if name == "python":
        args["code"] = data.draw(code_text)
    return args


def check_invariance(fmt: str, text: str, data: st.DataObject, unit: str,
                     n_splits: int = 5) -> list[Event]:
    kw: dict[str, Any] = {"id_prefix": "t", "streams": {"python": {"code": unit}}}
    whole = normalize(feed_all(get_parser(fmt, **kw), [text]))
    check_grammar(whole)
    for _ in range(n_splits):
        pieces = split(text, draw_cuts(data, text))
        events = feed_all(get_parser(fmt, **kw), pieces)
        check_grammar(events)
        assert normalize(events) == whole, pieces
    return whole


def check_calls(events: list[Event], expected: list[tuple[str, Any]]) -> None:
    done = [e for e in events if isinstance(e, CallDone)]
    assert [(e.name, e.args) for e in done] == expected
    assert [e.index for e in done] == list(range(len(expected)))


@SETTINGS
@given(st.data(), UNITS)
def test_hermes_chunking(data: st.DataObject, unit: str) -> None:
    parts, expected = [], []
    for _ in range(data.draw(COUNT_0_3)):
        parts.append(data.draw(HERMES_PROSE))
        name = data.draw(NAMES)
        key = data.draw(ARG_KEYS)
        args = call_args(data, name)
        obj = {"name": name, key: args} if data.draw(BOOL) else {key: args, "name": name}
        js = draw_dumps(data, obj)
        parts.append(f"<tool_call>{data.draw(WS)}{js}{data.draw(WS)}</tool_call>")
        expected.append((name, json.loads(js)[key]))
    parts.append(data.draw(HERMES_TAIL))
    events = check_invariance("hermes", "".join(parts), data, unit)
    check_calls(events, expected)


@SETTINGS
@given(st.data(), UNITS)
def test_llama3_chunking(data: st.DataObject, unit: str) -> None:
    objs, expected = [], []
    for _ in range(data.draw(COUNT_1_3)):
        name = data.draw(NAMES)
        key = data.draw(ARG_KEYS)
        js = draw_dumps(data, {"name": name, key: call_args(data, name)})
        objs.append(js)
        expected.append((name, json.loads(js)[key]))
    sep = data.draw(st.sampled_from(["; ", ";", "\n", " ;\n"]))
    head = data.draw(st.sampled_from(["", " ", "<|python_tag|>", "\n<|python_tag|> "]))
    text = head + sep.join(objs) + data.draw(st.sampled_from(["", "\n", " Done."]))
    events = check_invariance("llama3_json", text, data, unit)
    check_calls(events, expected)


@SETTINGS
@given(st.data(), UNITS)
def test_mistral_chunking(data: st.DataObject, unit: str) -> None:
    before = data.draw(MISTRAL_PROSE)
    expected, objs = [], []
    form = data.draw(st.sampled_from(["list", "args", "brace", "bare"]))
    for _ in range(data.draw(COUNT_1_3)):
        name = data.draw(NAMES)
        args = call_args(data, name)
        expected.append((name, args))
        objs.append((name, args))
    if form == "list":
        text = before + "[TOOL_CALLS]" + draw_dumps(
            data, [{"name": n, "arguments": a} for n, a in objs])
    elif form == "bare":            # vLLM's parser takes one object without the list
        text = before + "".join("[TOOL_CALLS]" + draw_dumps(data, {"name": n, "arguments": a})
                                for n, a in objs)
    else:                           # name[ARGS]{...}, or name{...} without [ARGS]
        sep = "[ARGS]" if form == "args" else data.draw(st.sampled_from(["", " "]))
        text = before + "".join(f"[TOOL_CALLS]{n}{sep}" + draw_dumps(data, a) for n, a in objs)
    expected = [(n, json.loads(json.dumps(a))) for n, a in expected]
    events = check_invariance("mistral", text, data, unit)
    check_calls(events, expected)


@SETTINGS
@given(st.data(), UNITS)
def test_openai_chunking(data: st.DataObject, unit: str) -> None:
    content = data.draw(SHORT_TEXT)
    calls = []
    for i in range(data.draw(COUNT_0_3)):
        name = data.draw(NAMES)
        js = draw_dumps(data, call_args(data, name))
        cid = data.draw(st.sampled_from([None, f"srv_{i}"]))
        calls.append((i, cid, name, js))

    def deltas(split_args: bool) -> list[Any]:
        out: list[Any] = []
        pieces = split(content, draw_cuts(data, content)) if split_args else [content]
        out += [{"role": "assistant", "content": p} for p in pieces]
        for i, cid, name, js in calls:
            frags = split(js, draw_cuts(data, js)) if split_args else [js]
            first = data.draw(st.sampled_from(["", None, frags[0]])) if split_args else frags[0]
            out.append({"tool_calls": [{"index": i, "id": cid, "type": "function",
                                        "function": {"name": name, "arguments": first}}]})
            rest = frags[1:] if first == frags[0] else frags
            out += [{"content": None, "tool_calls": [{"index": i, "function": {"arguments": f}}]}
                    for f in rest]
        return out

    kw: dict[str, Any] = {"id_prefix": "t", "streams": {"python": {"code": unit}}}
    whole = normalize(feed_all(get_parser("openai", **kw), deltas(False)))
    check_grammar(whole)
    check_calls(whole, [(name, json.loads(js)) for _, _, name, js in calls])
    ids = [e.id for e in whole if isinstance(e, CallDone)]
    assert ids == [cid or f"call_t_{i}" for i, cid, _, _ in calls]
    for _ in range(5):
        events = feed_all(get_parser("openai", **kw), deltas(True))
        check_grammar(events)
        assert normalize(events) == whole


@SETTINGS
@given(st.data(), UNITS)
def test_fenced_chunking(data: st.DataObject, unit: str) -> None:
    text_parts, expected = [], []
    words = ["`", "``", "x", " ", "~", "\n```js\nvar a\n```\nok ", "``inline``", "\n~~~\n~~~\n."]
    for _ in range(data.draw(COUNT_0_3)):
        # prose never leaves a line start behind, so it cannot open a fence by accident
        text_parts.append("T" + "".join(data.draw(st.lists(st.sampled_from(words), max_size=5))))
        code = data.draw(code_text)
        code = code if code.endswith("\n") or not code else code + "\n"
        lang = data.draw(st.sampled_from(["python", "py", "Python"]))
        fence = data.draw(st.sampled_from(["```", "````", "~~~"]))
        text_parts.append(f"\n{fence}{lang}\n{code}{fence}\n")
        expected.append(("python", {"code": code}))
    text_parts.append(data.draw(st.sampled_from(["", "bye", "\n``"])))
    text = "".join(text_parts)
    events = check_invariance("fenced_code", text, data, unit)
    check_calls(events, expected)


plan_literal = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 10 ** 12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8", exclude_characters="$"), max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=6)


PLAN_POSITIONAL = st.lists(plan_literal, max_size=2)
PLAN_KEYWORDS = st.dictionaries(st.sampled_from(["k", "q", "x_1"]), plan_literal, max_size=2)


@SETTINGS
@given(st.data())
def test_plan_chunking(data: st.DataObject) -> None:
    lines, expected = [], []
    for step in range(1, data.draw(st.integers(1, 4)) + 1):
        if data.draw(BOOL):
            lines.append("Thought: " + data.draw(SHORT_TEXT).replace("\n", " ")
                         .replace("\r", " ").replace("\u2028", " ") + "\n")
        name = data.draw(st.sampled_from(["search", "math"]))
        pos = data.draw(PLAN_POSITIONAL)
        kw = data.draw(PLAN_KEYWORDS)
        ref = data.draw(st.integers(1, step - 1)) if step > 1 and data.draw(BOOL) \
            else None
        if ref is not None:
            kw["ctx"] = f"use ${{{ref}}}" if data.draw(BOOL) else f"${ref}"
        argtext = ", ".join([repr(v) for v in pos] + [f"{k}={v!r}" for k, v in kw.items()])
        lines.append(f"{step}. {name}({argtext})\n")
        expected.append((name, ({"args": pos} if pos else {}) | kw))
    lines.append(data.draw(st.sampled_from(["join()\n", "4. join()", "", "Thought: done"])))
    events = check_invariance("plan", "".join(lines), data, "raw")
    check_calls(events, expected)
