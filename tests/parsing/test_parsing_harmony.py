"""gpt-oss harmony output (``harmony``): openai_harmony's own rendering under any tokenization
(random cuts and the encoding's real tokens), hostile input, and the same calls as vLLM's
harmony parser (``vllm.parser.harmony.HarmonyParser``, over openai_harmony's StreamableParser)."""

from __future__ import annotations

import json
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
    StreamDone,
    Text,
    TextChunk,
)
from conveyor_integrations.parsing.harmony import HarmonyParser

SETTINGS = settings(max_examples=250, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
STREAMS = {"python": {"code": "line"}, "search": {"query": "raw"}}
ENDS = ("<|end|>", "<|call|>", "<|return|>", "<|start|>")

try:   # the official renderer (PyPI oss-harmony): its vocabulary ships with the package
    from openai_harmony import (
        Conversation,
        HarmonyEncodingName,
        Message,
        RenderConversationConfig,
        Role,
        load_harmony_encoding,
    )
    ENC: Any = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
except Exception:  # noqa: BLE001 - not installed, or a broken install: hand rendering only
    ENC = None


def parser(**kw: Any) -> HarmonyParser:
    kw.setdefault("streams", STREAMS)
    return HarmonyParser(id_prefix="t", **kw)


def done_calls(events: list[Event]) -> list[tuple[str, Any]]:
    return [(e.name, e.args) for e in events if isinstance(e, CallDone)]


def reasons(events: list[Event]) -> list[str]:
    return [e.reason for e in events if isinstance(e, CallMalformed)]


def texts(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Text))


# -- rendering -------------------------------------------------------------------------------
# A message: ("analysis" | "commentary" | "final", text) or ("call", name, args, channel,
# content_type, json_text). Hand-rendered exactly as openai_harmony renders (checked against it
# whenever it is importable), so that the offsets of every value are known.

def render(msgs: list[tuple[Any, ...]], *, legacy: bool = False) -> tuple[str, list[int]]:
    """The conversation's text and where each call's JSON starts in it."""
    out, starts = "", []
    for m in msgs:
        if m[0] != "call":
            out += f"<|start|>assistant<|channel|>{m[0]}<|message|>{m[1]}<|end|>"
            continue
        _, name, _, channel, ctype, js = m
        if not legacy:               # the renderer writes <|constrain|> before any type
            ctype = "<|constrain|>" + ctype.removeprefix("<|constrain|>")
        if channel == "commentary" and not legacy:
            out += f"<|start|>assistant<|channel|>commentary to=functions.{name} {ctype}<|message|>"
        else:   # how the renderer writes other channels (and older renderers commentary too)
            out += f"<|start|>assistant to=functions.{name}<|channel|>{channel} {ctype}<|message|>"
        starts.append(len(out))
        out += js + "<|call|>"
    return out, starts


def official(msgs: list[tuple[Any, ...]]) -> str:
    hm = []
    for m in msgs:
        if m[0] == "call":
            hm.append(Message.from_role_and_content(Role.ASSISTANT, m[5]).with_channel(m[3])
                      .with_recipient(f"functions.{m[1]}").with_content_type(m[4]))
        else:
            hm.append(Message.from_role_and_content(Role.ASSISTANT, m[1]).with_channel(m[0]))
    toks = ENC.render_conversation(Conversation.from_messages(hm),
                                   RenderConversationConfig(auto_drop_analysis=False))
    return str(ENC.decode_utf8(toks))


def token_pieces(text: str) -> tuple[list[int], list[str]]:
    """The harmony encoding's tokens of ``text`` and each one's text (a character split over
    tokens comes with its last token; the others get "")."""
    ids = ENC.encode(text, allowed_special="all")
    pieces, start = [], 0
    for k in range(1, len(ids) + 1):
        try:
            pieces.append(ENC.decode_utf8(ids[start:k]))
            start = k
        except Exception:  # noqa: BLE001 - part of a character: it comes with a later token
            pieces.append("")
    assert "".join(pieces) == text
    return ids, pieces


LOOK_ALIKES = ["<|", "|>", "<", "<|en", "d|>", "<|channel|>", "<|message|>", "<|constrain|>",
               "to=functions.f", "<|start", "call|>", "{", "}", "\n", '"', "json"]
prose = st.lists(st.one_of(st.text(chars, max_size=5), st.sampled_from(LOOK_ALIKES)),
                 max_size=5).map("".join).filter(lambda s: not any(t in s for t in ENDS))
NAMES = st.sampled_from(["search", "get_weather", "python", "a.b-c_1"])
KEYS = st.sampled_from(["query", "k", "code", "city", "units", "flags", "nested", "x", "é😀",
                        'q"uote', "<|channel|>"])


def draw_value(data: st.DataObject, key: str) -> Any:
    if key == "code":
        return data.draw(code_text)
    return data.draw(st.one_of(prose, json_values, st.integers(-10**20, 10**20),
                               st.booleans(), st.none()))


def dumps(data: st.DataObject, obj: Any, plain: bool = False) -> str:
    if plain:
        return json.dumps(obj, ensure_ascii=data.draw(st.booleans()))
    return json.dumps(obj, ensure_ascii=data.draw(st.booleans()),
                      indent=data.draw(st.sampled_from([None, None, 1])),
                      separators=data.draw(st.sampled_from([None, (",", ":"), (", ", ": ")])))


def draw_conversation(data: st.DataObject, plain: bool = False
                      ) -> tuple[list[tuple[Any, ...]], list[tuple[str, dict[str, Any]]]]:
    msgs: list[tuple[Any, ...]] = []
    calls = []
    for i in range(data.draw(st.integers(1, 3))):
        for kind in data.draw(st.lists(st.sampled_from(["analysis", "commentary"]), max_size=2,
                                       unique=True)):
            msgs.append((kind, data.draw(prose)))
        name = data.draw(NAMES)
        keys = data.draw(st.lists(KEYS, max_size=4, unique=True))
        args = {k: draw_value(data, k) for k in keys}
        js = dumps(data, args, plain)
        assume(not any(t in js for t in ENDS))   # these are tokens, never text, in a real output
        channel = "commentary" if plain or i else data.draw(st.sampled_from(
            ["commentary", "commentary", "analysis"]))
        ctype = data.draw(st.sampled_from(["<|constrain|>json", "json"]))
        msgs.append(("call", name, args, channel, ctype, js))
        calls.append((name, json.loads(js)))
    if not plain and data.draw(st.booleans()):
        msgs.append(("final", data.draw(prose)))
    return msgs, calls


def final_offsets(js: str) -> dict[str, int]:
    """Per top-level key of the JSON object ``js``, how many of its characters make the value
    final: up to its last character; for a number, the character after it."""
    dec = json.JSONDecoder()

    def skip_ws(i: int) -> int:
        while js[i] in " \t\n\r":
            i += 1
        return i

    out: dict[str, int] = {}
    pos = skip_ws(js.index("{") + 1)
    while js[pos] != "}":
        key, pos = dec.raw_decode(js, pos)
        pos = skip_ws(skip_ws(pos) + 1)            # past the ":"
        value, end = dec.raw_decode(js, pos)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        out[key] = end + (1 if number else 0)
        pos = skip_ws(end)
        if js[pos] == ",":
            pos = skip_ws(pos + 1)
    return out


def expected_text(msgs: list[tuple[Any, ...]]) -> str:
    return "".join(m[1] for m in msgs if m[0] in ("commentary", "final"))


def expected_reasoning(msgs: list[tuple[Any, ...]]) -> str:
    return "\n".join(m[1] for m in msgs if m[0] == "analysis" and m[1])


def feed_tracked(p: HarmonyParser, pieces: list[str]) -> list[tuple[int, Event]]:
    out = [(i, e) for i, piece in enumerate(pieces) for e in p.feed(piece)]
    return out + [(len(pieces), e) for e in p.close()]


def check_earliness(tracked: list[tuple[int, Event]], pieces: list[str],
                    finals: list[dict[str, int]]) -> None:
    """Each top-level FieldDone comes in the delta holding its value's final character."""
    ends = [0]
    for p in pieces:
        ends.append(ends[-1] + len(p))
    seen = set()
    for d, e in tracked:
        if isinstance(e, FieldDone) and len(e.path) == 1:
            need = finals[e.index][str(e.path[0])]
            assert d < len(pieces) and ends[d + 1] >= need, (e, d, need, pieces)
            assert ends[d] < need, (e, d, need, pieces)        # and not before it is there
            seen.add((e.index, e.path[0]))
    assert seen == {(i, k) for i, f in enumerate(finals) for k in f}


@SETTINGS
@given(st.data())
def test_renderer_output_any_tokenization(data: st.DataObject) -> None:
    msgs, calls = draw_conversation(data)
    legacy = data.draw(st.booleans())
    text, starts = render(msgs, legacy=legacy)
    if ENC is not None and not legacy:
        assert official(msgs) == text
    if data.draw(st.booleans()):                  # the prompt already holds <|start|>assistant
        text = text.removeprefix("<|start|>assistant")
        starts = [s - len("<|start|>assistant") for s in starts]
    if msgs[-1][0] == "final" and data.draw(st.booleans()):
        text = text.removesuffix("<|end|>") + "<|return|>"   # what the model itself ends with
    finals = [{k: s + v for k, v in final_offsets(m[5]).items()}
              for s, m in zip(starts, [m for m in msgs if m[0] == "call"], strict=True)]
    p = parser()
    whole = feed_all(p, [text])
    check_grammar(whole)
    assert done_calls(whole) == calls
    assert not reasons(whole)
    assert texts(whole) == expected_text(msgs)
    assert p.reasoning == expected_reasoning(msgs)
    assert [e.index for e in whole if isinstance(e, CallDone)] == list(range(len(calls)))
    cuts = [draw_cuts(data, text) for _ in range(3)]
    tokenizations = [split(text, c) for c in cuts]
    if ENC is not None:
        tokenizations.append(token_pieces(text)[1])
    for pieces in tokenizations:
        q = parser()
        tracked = feed_tracked(q, pieces)
        events = [e for _, e in tracked]
        check_grammar(events)
        assert normalize(events) == normalize(whole), pieces
        assert q.reasoning == p.reasoning
        check_earliness(tracked, pieces, finals)


def test_documented_example() -> None:
    text = ("<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant"
            "<|channel|>commentary<|message|>Checking.<|end|><|start|>assistant<|channel|>"
            "commentary to=functions.python <|constrain|>json<|message|>"
            '{"code": "for i in range(2):\\n    print(i)\\n", "timeout": 5}<|call|>')
    p = parser()
    evs = feed_all(p, list(text))
    check_grammar(evs)
    code = "for i in range(2):\n    print(i)\n"
    assert [e for e in normalize(evs) if not isinstance(e, TextChunk)] == [
        Text("Checking."), CallStarted(0, "call_t_0", "python"),
        FieldDone(0, ("code",), code), FieldDone(0, ("timeout",), 5),
        CallDone(0, "call_t_0", "python", {"code": code, "timeout": 5}), StreamDone()]
    assert [e.text for e in evs if isinstance(e, TextChunk)] == ["for i in range(2):\n",
                                                                 "    print(i)\n"]
    assert p.reasoning == "Need the weather."


def test_call_starts_when_its_name_is_known() -> None:
    head = "<|channel|>commentary to=functions.search"
    p = parser()
    assert p.feed(head) == []                       # "search" may still grow
    assert p.feed(" ") == [CallStarted(0, "call_t_0", "search")]
    p = parser()
    assert p.feed(" to=functions.get<") == [CallStarted(0, "call_t_0", "get")]


def test_header_forms_and_endings() -> None:
    body = '{"q": "x"}'
    for text in [
        f"<|channel|>commentary to=functions.f <|constrain|>json<|message|>{body}<|call|>",
        f"<|start|>assistant<|channel|>commentary to=functions.f json<|message|>{body}<|call|>",
        f" to=functions.f<|channel|>commentary json<|message|>{body}<|call|>",
        f"<|start|>assistant to=functions.f<|channel|>commentary json<|message|>{body}<|call|>",
        f"<|channel|>analysis to=functions.f<|message|>{body}<|call|>",
        f"<|channel|>commentary to=functions.f<|message|> {body}\n<|end|>",
        f"<|channel|>commentary to=functions.f json<|message|>{body}<|return|>",
        # the recipient in both places (seen from gpt-oss echoing older headers)
        ("<|start|>assistant to=functions.f<|channel|>commentary to=functions.f<|message|>"
         f"{body}<|call|>"),
    ]:
        for pieces in ([text], list(text)):
            evs = parse(pieces)
            check_grammar(evs)
            assert done_calls(evs) == [("f", {"q": "x"})] and not reasons(evs), text
    evs = parse("<|channel|>commentary to=functions.f<|message|><|call|>")
    assert done_calls(evs) == [("f", {})]                  # no arguments at all


def parse(pieces: list[str] | str, **kw: Any) -> list[Event]:
    return feed_all(parser(**kw), [pieces] if isinstance(pieces, str) else pieces)


def test_channels() -> None:
    text = ("<|channel|>analysis<|message|>a1<|end|><|start|>assistant<|channel|>analysis"
            "<|message|><|end|><|start|>assistant<|channel|>analysis<|message|>a2<|end|>"
            "<|start|>assistant<|channel|>commentary<|message|>pre<|end|><|start|>assistant"
            "<|message|>bare<|end|><|start|>assistant<|channel|>other<|message|>o<|end|>"
            "<|start|>assistant<|channel|>final<|message|>fin<|return|>")
    for pieces in ([text], list(text)):
        p = parser()
        evs = feed_all(p, pieces)
        assert normalize(evs) == [Text("prebareofin"), StreamDone()]
        assert p.reasoning == "a1\na2"


def test_text_without_harmony_markup_and_look_alikes() -> None:
    for text in ["plain answer", "<|chat|> x", "<|start", "<|channel", " to", "<", "",
                 "hi <|start", "a <|channel|>final<|message|>b"]:
        for pieces in ([text], list(text)):
            evs = parse(pieces)
            assert normalize(evs) == normalize([Text(text), StreamDone()]), text
    text = "<|channel|>final<|message|>a <|cal <|en|> |> <|channel|> <|start b<|return|>"
    for pieces in ([text], list(text)):
        assert normalize(parse(pieces)) == [Text("a <|cal <|en|> |> <|channel|> <|start b"),
                                            StreamDone()]
    # text between or after messages is text too
    text = "<|channel|>final<|message|>a<|end|> b <|start|>assistant<|channel|>final<|message|>c"
    assert texts(parse(text)) == "a b c"


def test_special_tokens_frame_even_inside_json() -> None:
    """In a real output ``<|call|>`` is one token and cannot sit inside a JSON string."""
    evs = parse('<|channel|>commentary to=functions.f<|message|>{"s": "a<|call|>"}<|call|>')
    assert reasons(evs) == ["arguments JSON incomplete at <|call|>"]
    assert texts(evs) == '"}<|call|>'


# -- hostile input -------------------------------------------------------------------------

FULL = ("<|channel|>analysis<|message|>Think <|end|><|start|>assistant<|channel|>commentary"
        " to=functions.search <|constrain|>json<|message|>"
        '{"query": "it\'s \\"x\\" <|", "k": 12, "flags": [true, null], "o": {"a": -1.5e3}}'
        "<|call|><|start|>assistant to=functions.python<|channel|>commentary json<|message|>"
        '{"code": "x = 1\\nprint(x)\\n"}<|call|>'
        "<|start|>assistant<|channel|>final<|message|>Done.<|return|>")


def test_truncated_at_every_prefix() -> None:
    ends = [FULL.index("<|call|>") + 8, FULL.rindex("<|call|>") + 8]
    for cut in range(len(FULL) + 1):
        prefix = FULL[:cut]
        for pieces in ([prefix], split(prefix, range(0, cut, 3))):
            evs = parse(pieces)
            check_grammar(evs)
            done = {e.index for e in evs if isinstance(e, CallDone)}
            assert done == {i for i, end in enumerate(ends) if cut >= end}, prefix
            started = {e.index for e in evs if isinstance(e, CallStarted)}
            bad = {e.index for e in evs if isinstance(e, CallMalformed)}
            assert started - done <= bad, prefix
            assert all(r.startswith("truncated") for r in reasons(evs)), (prefix, reasons(evs))


GOOD = ('<|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>'
        '{"n": 1}<|call|>')


@pytest.mark.parametrize("bad,reason", [
    ('<|channel|>commentary to=functions.rm json<|message|>{"p": "/"}<|call|>',
     "unknown tool 'rm'"),
    ('<|channel|>commentary to=functions.f json<|message|>{"n": 1, "n": 2}<|call|>',
     "duplicate key 'n'"),
    ('<|channel|>commentary to=python code<|message|>import os<|call|>',
     "recipient 'python' is not a function (functions.NAME): built-in tools are not run"),
    ('<|channel|>commentary to=browser.search json<|message|>{"query": "x"}<|call|>',
     "recipient 'browser.search' is not a function"),
    ('<|channel|>analysis to=container.exec json<|message|>{"cmd": ["ls"]}<|call|>',
     "recipient 'container.exec' is not a function"),
    ('<|channel|>commentary to=functions.<|message|>{}<|call|>',
     "recipient 'functions.' is not a function"),
    ('<|channel|>commentary to=functions.f json<|message|>{"n": tru}<|call|>', "invalid"),
    ('<|channel|>commentary to=functions.f json<|message|>[1]<|call|>', "expected a JSON object"),
    ('<|channel|>commentary to=functions.f json<|message|>{"n": 1} extra<|call|>',
     "unexpected text after the arguments JSON"),
    ('<|channel|>commentary to=functions.f json<|message|>{"n": 1<|call|>',
     "arguments JSON incomplete at <|call|>"),
    ('<|channel|>commentary to=functions.f json<|message|>{"n": 1}', "missing <|call|>"),
    ('<|channel|>commentary to=functions.f json{"n": 1}<|call|>', "without <|message|>"),
    ('<|channel|>commentary to=functions.f to=functions.g<|message|>{}<|call|>',
     "second recipient"),
    ('<|channel|>commentary to=functions.f <|constrain|><|message|>{}<|call|>',
     "bad or repeated <|constrain|>"),
    ('<|channel|>commentary to=functions.f json code<|message|>{}<|call|>', "unexpected 'code'"),
    ('<|channel|>a<|channel|>b to=functions.f<|message|>{}<|call|>', "repeated <|channel|>"),
    ('<|start|>user<|message|>hi<|end|>', "expected the role 'assistant', got 'user'"),
    ("<|channel|>" + "x" * 600 + "<|message|>hi<|end|>", "longer than 512 characters"),
    ('<|channel|>commentary to=functions.f json<|message|>{"n": "\\x"}<|call|>',
     "invalid escape"),
])
def test_malformed_then_recovery(bad: str, reason: str) -> None:
    text = bad + "<|start|>assistant<|channel|>final<|message|>between<|end|>" + GOOD
    kw: dict[str, Any] = {"tools": ["f", "g"]}
    whole = parse(text, **kw)
    for pieces in ([text], list(text), split(text, range(0, len(text), 5))):
        evs = parse(pieces, **kw)
        check_grammar(evs)
        assert same_up_to_reasons(evs, whole)
        got = reasons(evs)
        assert len(got) == 1 and reason in got[0], got
        assert done_calls(evs) == [("f", {"n": 1})]
        assert texts(evs) == "between"


def same_up_to_reasons(a: list[Event], b: list[Event]) -> bool:
    """Equal events, but a reason may quote more or less of the text (as the delta held)."""
    def key(events: list[Event]) -> list[Any]:
        return [(e.index, e.name, e.reason.split(" '")[0]) if isinstance(e, CallMalformed)
                else e for e in normalize(events)]
    return key(a) == key(b)


def test_limits() -> None:
    head = "<|channel|>commentary to=functions.f json<|message|>"
    evs = parse([head, '{"a": [[1]]}<|call|>', GOOD, "<|start|>assistant" + head,
                 '{"a": [[[1]]]}<|call|>'],
                max_depth=3)
    assert done_calls(evs) == [("f", {"a": [[1]]}), ("f", {"n": 1})]
    assert [r.split(" at ")[0] for r in reasons(evs)] == ["nesting deeper than 3 levels"]
    evs = parse([head + '{"query": "', "x" * 600, "y" * 600, '"}<|call|>', GOOD],
                max_arg_chars=1000, streams={"f": {"query": "raw"}})
    check_grammar(evs)
    assert reasons(evs) == ["arguments exceed 1000 characters"]
    assert sum(len(e.text) for e in evs if isinstance(e, TextChunk)) <= 1000
    assert done_calls(evs) == [("f", {"n": 1})]
    deep = "[" * 10_000 + "]" * 10_000
    evs = parse(head + '{"a": ' + deep + "}<|call|>" + GOOD)
    assert [r.split(" at ")[0] for r in reasons(evs)] == ["nesting deeper than 256 levels"]
    assert done_calls(evs) == [("f", {"n": 1})]


def test_streamed_code_field_comes_in_lines() -> None:
    code = "import os\nfor i in range(3):\n    print(i)\nx = '\"<|'\n"
    text = ("<|channel|>commentary to=functions.python json<|message|>"
            + json.dumps({"code": code, "n": 1}) + "<|call|>")
    for unit in ("line", "statement", "raw"):
        p = HarmonyParser(id_prefix="t", streams={"python": {"code": unit}})
        evs = feed_all(p, list(text))
        check_grammar(evs)
        pieces = [e.text for e in evs if isinstance(e, TextChunk)]
        assert "".join(pieces) == code
        if unit == "line":
            assert pieces == code.splitlines(keepends=True)


VOCAB = ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|call|>", "<|return|>",
         "<|constrain|>", "assistant", " to=functions.f", " to=functions.rm", " to=python",
         "commentary", "analysis", "final", " json", "{", "}", '"k"', ":", "1", ",", '"v', "\\",
         "<|", "|>", "<|st", "art|>", "<", " ", "\n", "x", "[", "]", "true", "to="]


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_garbage(data: st.DataObject) -> None:
    text = "".join(data.draw(st.lists(st.sampled_from(VOCAB), max_size=30)))
    kw: dict[str, Any] = {"streams": {"f": {"k": "line"}}, "tools": ["f"]}
    p = parser(**kw)
    whole = feed_all(p, [text])
    check_grammar(whole)
    assert all(e.reason for e in whole if isinstance(e, CallMalformed))
    q = parser(**kw)
    events = feed_all(q, split(text, draw_cuts(data, text)))
    check_grammar(events)
    assert normalize(events) == normalize(whole)
    assert q.reasoning == p.reasoning


def test_50mb_argument_is_not_buffered() -> None:
    chunk = "abcdefg\\n" * (64 * 1024 // 9)

    def stream() -> Iterator[str]:
        yield '<|channel|>commentary to=functions.search json<|message|>{"query": "'
        for i in range(50 * 1024 * 1024 // len(chunk)):   # fresh strings: keeping them costs
            yield chunk[:-8] + f"{i:08d}"
        yield '"}<|call|><|start|>assistant<|channel|>final<|message|>bye<|return|>'

    p = parser()
    kinds: dict[str, int] = {}
    tracemalloc.start()
    try:
        for delta in stream():
            for e in p.feed(delta):
                kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        for e in p.close():
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kinds.get("CallMalformed") == 1 and "CallDone" not in kinds, kinds
    assert kinds["Text"] == 1 and kinds["TextChunk"] > 100       # "query" streams raw
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_linear_time() -> None:
    def per_char(n: int) -> float:
        args = json.dumps({"xs": [f"item <| {i}" for i in range(n)], "code": "x\n" * n})
        text = ("<|channel|>analysis<|message|>" + "think <| " * n + "<|end|><|start|>assistant"
                "<|channel|>commentary to=functions.python json<|message|>" + args + "<|call|>")
        best = float("inf")
        for _ in range(3):
            p = parser()
            t0 = time.perf_counter()
            evs = [e for i in range(0, len(text), 4) for e in p.feed(text[i:i + 4])] + p.close()
            best = min(best, time.perf_counter() - t0)
        assert [type(e).__name__ for e in evs[-2:]] == ["CallDone", "StreamDone"]
        return best

    small, big = per_char(2000), per_char(8000)
    assert big < 6 * small, (small, big)


# -- against vLLM's harmony parser --------------------------------------------------------------

def vllm_harmony() -> Any:
    """vLLM's ``HarmonyParser`` as its serving layer builds it for gpt-oss (the "openai" tool
    parser, ``GptOssToolParser``, is a stub that defers to it): it runs openai_harmony's
    StreamableParser over the token ids, so no tokenizer is needed (it only decodes on error)."""
    try:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.parser.harmony import HarmonyParser as VllmHarmony
        from vllm.reasoning.gptoss_reasoning_parser import GptOssReasoningParser
        from vllm.tool_parsers.gptoss_tool_parser import GptOssToolParser
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
        pytest.skip(f"vllm is not importable ({type(e).__name__}: {e})")
    if ENC is None:
        pytest.skip("openai_harmony is not importable")

    class Harmony(VllmHarmony):  # type: ignore[misc]
        tool_parser_cls = GptOssToolParser
        reasoning_parser_cls = GptOssReasoningParser

    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
             for n in ["search", "get_weather", "python", "a.b-c_1"]]
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                                    tools=tools)
    return lambda: Harmony(None, request.tools), request


@pytest.mark.vllm
@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_same_calls_and_no_later_than_vllm(data: st.DataObject) -> None:
    make, request = vllm_harmony()
    msgs, calls = draw_conversation(data, plain=True)
    text, starts = render(msgs)
    assert official(msgs) == text
    text = text.removeprefix("<|start|>assistant")     # vLLM's parser starts in the header
    starts = [s - len("<|start|>assistant") for s in starts]
    ids, tok_text = token_pieces(text)
    # the same final calls, text and reasoning as vLLM's non-streaming parse
    reasoning, content, fcalls = make().parse("", request, True, ids)
    theirs = [(c.name, json.loads(c.arguments)) for c in fcalls or []]
    p = parser()
    ours = feed_all(p, [text])
    assert done_calls(ours) == theirs == calls
    assert p.reasoning == (reasoning or "")
    # vLLM's non-streaming content joins the messages' texts with "\n"; streamed, it does not
    assert (content or "") == "\n".join(m[1] for m in msgs if m[0] == "commentary" and m[1])
    # streaming: token groups; vLLM's streamed arguments vs our FieldDone
    rng_cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(ids) - 1)),
                                             max_size=len(ids) // 2))))
    groups = [(a, b) for a, b in zip([0, *rng_cuts], [*rng_cuts, len(ids)], strict=True) if a < b]
    v = make()
    args: list[str] = []
    lengths: list[list[int]] = []
    streamed_text = ""
    for g, (a, b) in enumerate(groups):
        delta = v.parse_delta("".join(tok_text[a:b]), ids[a:b], request,
                              finished=g == len(groups) - 1)
        if delta is not None:
            streamed_text += delta.content or ""
            for tc in delta.tool_calls or []:
                while len(args) <= tc.index:
                    args.append("")
                args[tc.index] += tc.function.arguments or ""
        lengths.append([len(x) for x in args])
    call_msgs = [m for m in msgs if m[0] == "call"]
    assert args == [m[5] for m in call_msgs]
    pieces = ["".join(tok_text[a:b]) for a, b in groups]
    q = parser()
    tracked = feed_tracked(q, pieces)
    assert normalize([e for _, e in tracked]) == normalize(ours)
    assert texts(ours) == streamed_text                  # vLLM streams messages' texts joined
    for d, e in tracked:
        if isinstance(e, FieldDone) and len(e.path) == 1:
            need = final_offsets(call_msgs[e.index][5])[str(e.path[0])]
            theirs_at = next((i for i, ls in enumerate(lengths)
                              if e.index < len(ls) and ls[e.index] >= need), len(groups))
            assert d <= theirs_at, (e, d, theirs_at, pieces)
