"""The pythonic format (Llama 3.2 / Llama 4, vLLM's ``pythonic`` and ``llama4_pythonic``):
generated calls under random tokenizations give what ``ast.literal_eval`` gives, each value is
reported no later than the delta that makes it final; hostile input is always a clear
``CallMalformed`` or text; and on valid output vLLM's own parser gives the same calls."""

from __future__ import annotations

import ast
import json
import keyword
import random
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
    ItemDone,
    StreamDone,
    Text,
    TextChunk,
)
from conveyor_integrations.parsing import PythonicParser, get_parser

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
STREAMS = {"python": {"code": "line"}}


def parse(text: str | list[str], **kw: Any) -> list[Event]:
    kw.setdefault("id_prefix", "t")
    return feed_all(PythonicParser(**kw), [text] if isinstance(text, str) else text)


def done_calls(events: list[Event]) -> list[tuple[str, Any]]:
    return [(e.name, e.args) for e in events if isinstance(e, CallDone)]


def reasons(events: list[Event]) -> list[str]:
    return [e.reason for e in events if isinstance(e, CallMalformed)]


def as_json(value: Any) -> Any:
    """What vLLM's reader makes of a literal: tuples (and sets) are lists."""
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


# -- generated calls: rendering Python values as source, in the ways a model may write them ---

TEXT = st.text(alphabet=chars, max_size=10)
LEAF = (st.none() | st.booleans() | st.integers(-(10 ** 20), 10 ** 20)
        | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
VALUES = st.recursive(
    LEAF, lambda c: (st.lists(c, max_size=4) | st.lists(c, max_size=3).map(tuple)
                     | st.dictionaries(TEXT, c, max_size=3)), max_leaves=10)
NAMES = st.sampled_from(["python", "search", "get_weather", "ns.tool"])
KW = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda k: not keyword.iskeyword(k) and k not in ("true", "false", "null"))
SEPS = st.sampled_from([", ", ",", ", ", ",\n    ", " , ", ", # note\n  "])
INT_FORMS = st.sampled_from(["repr", "repr", "hex", "under", "plus"])
STR_FORMS = st.sampled_from(["repr", "repr", "json", "triple", "raw_triple", "prefix"])
BOOL = st.booleans()


class Render:
    """Render a value as Python source; ``vllm_safe`` keeps to the plainest spelling."""

    def __init__(self, data: st.DataObject, vllm_safe: bool = False) -> None:
        self.data = data
        self.safe = vllm_safe

    def sep(self) -> str:
        return ", " if self.safe else self.data.draw(SEPS)

    def __call__(self, v: Any) -> str:
        draw = self.data.draw
        if isinstance(v, bool) or v is None:
            return repr(v)
        if isinstance(v, int):
            form = draw(INT_FORMS)
            sign = "-" if v < 0 else ""
            if form == "hex":
                return sign + hex(abs(v))
            if form == "under":
                return f"{v:_}"
            return ("+" if form == "plus" and v >= 0 and not self.safe else "") + repr(v)
        if isinstance(v, float):
            return repr(v)
        if isinstance(v, str):
            return self.string(v)
        trail = "," if not self.safe and v and draw(BOOL) else ""
        if isinstance(v, tuple):
            inner = self.sep().join(map(self, v))
            return f"({inner},)" if len(v) == 1 else f"({inner}{trail})"
        if isinstance(v, list):
            return "[" + self.sep().join(map(self, v)) + trail + "]"
        return "{" + self.sep().join(f"{self.string(k)}: {self(x)}" for k, x in v.items()) \
            + trail + "}"

    def string(self, s: str) -> str:
        form = self.data.draw(STR_FORMS)
        r = repr(s)
        if form == "json":
            return json.dumps(s, ensure_ascii=False)
        if form == "triple":
            return r[0] * 3 + r[1:-1] + r[0] * 3
        plain = not any(c in s for c in '"\\\r\x00')
        if form == "raw_triple" and plain:
            return 'r"""' + s + '"""'
        if form == "prefix" and not self.safe:
            return "u" + r
        return r


def render_call(render: Render, name: str, args: dict[str, Any], at: int,
                finals: dict[str, int]) -> str:
    """``name(k=v, ...)``, noting in ``finals`` where in the message each value is final."""
    out = name + "("
    for i, (k, v) in enumerate(args.items()):
        if i:
            out += render.sep()
        out += k + "="
        src = render(v)
        out += src
        # a number (and '', which may open a triple quote) is final at the character after
        # it; anything else at its last character
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        finals[k] = at + len(out) + (1 if number or src.lstrip("ruRU") in ("''", '""') else 0)
    return out + ")"


def draw_message(data: st.DataObject, vllm_safe: bool = False
                 ) -> tuple[str, list[tuple[str, dict[str, Any]]], list[dict[str, int]], str]:
    """A message: (head) [calls] (tail); the expected calls, the final offsets, the tail."""
    render = Render(data, vllm_safe)
    tagged = not vllm_safe and data.draw(BOOL)
    head = ("<|python_start|>" if tagged else "") + ("" if vllm_safe else
                                                     data.draw(st.sampled_from(["", "", "\n"])))
    text = head + "["
    expected, finals = [], []
    for i in range(data.draw(st.integers(1, 3))):
        if i:
            text += render.sep()
        name = data.draw(NAMES.filter(lambda n: not vllm_safe or "." not in n))
        keys = data.draw(st.lists(KW, max_size=4, unique=True))
        args = {k: data.draw(VALUES) for k in keys}
        if name == "python":
            args["code"] = data.draw(code_text)
        fin: dict[str, int] = {}
        src = render_call(render, name, args, len(text), fin)
        text += src
        # the oracle: Python itself, on each value's source as rendered
        tree = ast.parse(src, mode="eval").body
        assert isinstance(tree, ast.Call)
        expected.append((name, {kw.arg: as_json(ast.literal_eval(kw.value))
                                for kw in tree.keywords if kw.arg is not None}))
        finals.append(fin)
    tail = "" if vllm_safe else data.draw(st.sampled_from(["", " Done.", "\nok"]))
    text += "]" + ("<|python_end|>" if tagged else "") + tail
    return text, expected, finals, tail if tagged else tail.strip()   # ws after "]" dropped


def assert_same_floats(got: Any, want: Any) -> None:
    assert json.dumps(got) == json.dumps(want)       # -0.0 is not 0.0, 1 is not 1.0


@SETTINGS
@given(st.data())
def test_generated_calls_any_tokenization(data: st.DataObject) -> None:
    text, expected, finals, tail = draw_message(data)
    whole = normalize(parse(text, streams=STREAMS))
    check_grammar(whole)
    assert_same_floats(done_calls(whole), expected)
    assert not reasons(whole)
    assert "".join(e.text for e in whole if isinstance(e, Text)) == tail
    for _ in range(4):
        pieces = split(text, draw_cuts(data, text))
        parser = PythonicParser(id_prefix="t", streams=STREAMS)
        events: list[Event] = []
        seen = 0
        for piece in pieces:
            seen += len(piece)
            for e in parser.feed(piece):
                events.append(e)
                if isinstance(e, FieldDone) and len(e.path) == 1:
                    final = finals[e.index][str(e.path[0])]
                    # no later than the delta that makes the value final
                    assert seen - len(piece) < final, (e, pieces)
        events += parser.close()
        check_grammar(events)
        assert normalize(events) == whole, pieces


def test_each_value_final_at_its_last_character() -> None:
    text = '[f(s="ab", n=12, t=True, l=[1, 2], d={"k": None}, u=(1,), g=(3))]'
    p = PythonicParser(id_prefix="t")
    got: dict[Any, int] = {}
    for i, ch in enumerate(text):
        for e in p.feed(ch):
            if isinstance(e, (FieldDone, ItemDone)):
                got[e.path if isinstance(e, FieldDone) else (*e.path, e.i)] = i
    assert got[("s",)] == text.index('"ab"') + 3
    assert got[("n",)] == text.index("12") + 2          # at the "," after it
    assert got[("t",)] == text.index("True") + 3
    assert got[("l", 0)] == text.index("1, 2]") + 1
    assert got[("l",)] == text.index("2]") + 1
    assert got[("d", "k")] == text.index("None") + 3
    assert got[("u", 0)] == text.index("1,)") + 1       # a tuple once the "," says so
    assert got[("g",)] == text.index("3))") + 1          # "(3)" is 3, known at its ")"


# -- the format's details ----------------------------------------------------------------------

@pytest.mark.parametrize("src,value", [
    ("'it\\'s'", "it's"), ('"a\\"b"', 'a"b'), ("'\\x41\\u00e9\\U0001F600\\N{BULLET}'", "Aé😀•"),
    ("'\\101\\7'", "A\x07"), ("r'\\d+\\''", "\\d+\\'"), ("R'x'", "x"), ("u'x'", "x"),
    ("f'plain'", "plain"), ("''", ""), ('""""""', ""), ('"""a"b""c"""', 'a"b""c'),
    ("'''l1\nl2'''", "l1\nl2"), ("'''a\r\nb\rc'''", "a\nb\nc"), ("'a\\\nb'", "ab"),
    ("'\\d'", "\\d"), ("'é😀'", "é😀"),
    ("-1", -1), ("- 1", -1), ("--2", 2), ("+3", 3), ("1_000", 1000), ("0x_1f", 31), ("0o17", 15),
    ("0b101", 5), ("00", 0), ("1.", 1.0), (".5", 0.5), ("1e3", 1000.0), ("1E-2", 0.01),
    ("-0.0", -0.0), ("01.5", 1.5), ("True", True), ("false", False), ("null", None),
    ("None", None), ("[]", []), ("()", []), ("{}", {}), ("(1)", 1), ("((1,),)", [[1]]),
    ("{1, 2, 1}", [1, 2, 1]), ("{'a': 1,}", {"a": 1}), ("[1, # one\n 2]", [1, 2]),
    ("{'a': (1, [2])}", {"a": [1, [2]]}), ("{[1], [2]}", [[1], [2]]),
])
def test_literals(src: str, value: Any) -> None:
    text = f"[f(v={src})]"
    for pieces in ([text], list(text)):
        evs = parse(pieces)
        check_grammar(evs)
        assert done_calls(evs) == [("f", {"v": value})], (src, evs)
        assert_same_floats(done_calls(evs)[0][1]["v"], value)


@pytest.mark.parametrize("text,reason", [
    ("[f(x=a+b)]", "not a literal: 'a'"),
    ("[f(x=print(1))]", "not a literal: 'print'"),
    ("[f(1)]", "only keyword arguments (name=value) are supported"),
    ("[f(x)]", "only keyword arguments (name=value) are supported"),
    ("[f(*a)]", "only keyword arguments (name=value) are supported"),
    ("[f(**a)]", "only keyword arguments (name=value) are supported"),
    ("[f(a=1, a=2)]", "keyword argument 'a' repeated"),
    ("[f(x=1 + 2)]", "unexpected '+' after a value"),
    ("[f(x=1if 1 else 2)]", "invalid number '1if'"),
    ("[f(x=[1, 2][0])]", "unexpected '[' after a value"),
    ("[f(x=01)]", "invalid number '01'"),
    ("[f(x=1j)]", "invalid number '1j'"),
    ("[f(x=1e999)]", "number out of range"),
    ("[f(x=b'x')]", "bytes are not JSON values"),
    ("[f(x=f'{y}')]", "f-string placeholders are not literals"),
    ("[f(x='a' 'b')]", "implicit string concatenation is not supported"),
    ("[f(x='a\nb')]", "unterminated string (a line break in a single-quoted string)"),
    ("[f(x='\\x4')]", f"invalid escape {chr(92) + 'x4' + chr(39)!r} in string"),
    ("[f(x='\\N{NO SUCH NAME}')]", "invalid escape in string"),
    ("[f(x={1: 2})]", "dict keys must be strings"),
    ("[f(x={'a': 1, 'a': 2})]", "repeated dict key 'a'"),
    ("[f(x=-True)]", "a sign must be followed by a number"),
    ("[f(x=-(1))]", "a sign must be followed by a number"),
    ("[f(x=lambda: 1)]", "not a literal: 'lambda'"),
    ("[f(x='a\x00')]", "a NUL character in a string (write \\x00)"),
    ("[f(x=...)]", "invalid number '...'"),
    ("[f(x=[1,,2])]", "unexpected ',' (values must be Python literals)"),
    ("[f(x=)]", "unexpected ')' (values must be Python literals)"),
    ("[f(class=1)]", "'class' is not a valid argument name"),
    ("[f(x==1)]", "unexpected '=' (values must be Python literals)"),
])
def test_malformed(text: str, reason: str) -> None:
    for pieces in ([text + " g()]"], list(text + " g()]")):
        evs = parse(pieces)
        check_grammar(evs)
        assert reasons(evs) == [reason], evs
        assert not done_calls(evs)


def test_text_before_or_instead_of_a_list_is_text() -> None:
    for text in ["Sure: [f(x=1)]", "[1, 2] are the answers", "[Note] see below", "[]", "[ ]",
                 "<|python_start|>f(x=1)<|python_end|>", "# [f()]", "(f(x=1))"]:
        for pieces in ([text], list(text)):
            evs = parse(pieces)
            assert normalize(evs) == [Text(text), StreamDone()], text


def test_llama4_tags_and_text_after() -> None:
    evs = parse("<|python_start|>[f(x=1)]<|python_end|> Let me check.")
    assert done_calls(evs) == [("f", {"x": 1})]
    assert normalize(evs)[-2:] == [Text(" Let me check."), StreamDone()]   # verbatim after the tag
    evs = parse(["  \n[f(x=1)] \n", "<|python_en", "d|>"])   # leading space, split end tag
    assert done_calls(evs) == [("f", {"x": 1})] and not any(isinstance(e, Text) for e in evs)
    assert normalize(parse("[f()]<|python_e"))[-2] == Text("<|python_e")


def test_dotted_names_and_layout() -> None:
    text = "[\n  ns.tool(a=1,),\n  # then\n  g (\n    b='x',  # why\n  ),\n]"
    evs = parse(text)
    assert done_calls(evs) == [("ns.tool", {"a": 1}), ("g", {"b": "x"})]


def test_malformed_call_skips_the_rest_of_the_list() -> None:
    evs = parse("[f(x=1), g(y=oops, z='])'), h(w=2)] after")
    assert done_calls(evs) == [("f", {"x": 1})]
    assert reasons(evs) == ["not a literal: 'oops'"]
    assert normalize(evs)[-2] == Text("after")
    evs = parse("[f(x=1), 42, g()]")
    assert reasons(evs) == ["expected a tool call, name(keyword=value, ...)"]
    bad = next(e for e in evs if isinstance(e, CallMalformed))
    assert (bad.index, bad.id, bad.name) == (1, None, None)


def test_unknown_tool_is_skipped_alone() -> None:
    evs = parse(["[rm(path='/', x={'a': ')'}), f(x=1)]"], tools=["f"])
    assert [type(e).__name__ for e in evs] == [
        "CallMalformed", "CallStarted", "FieldDone", "CallDone", "StreamDone"]
    assert reasons(evs) == ["unknown tool 'rm'"] and done_calls(evs) == [("f", {"x": 1})]


def test_streamed_string_argument() -> None:
    code = "import os\nfor i in range(3):\n    print(i)\nx = '\"'\n"
    text = f"[python(code={code!r}, n=1)]"
    for unit in ("line", "statement", "raw"):
        p = PythonicParser(id_prefix="t", streams={"python": {"code": unit}})
        evs: list[Event] = []
        for ch in text:
            evs += p.feed(ch)
        evs += p.close()
        check_grammar(evs)
        pieces = [e.text for e in evs if isinstance(e, TextChunk)]
        assert "".join(pieces) == code
        if unit == "line":
            assert pieces == code.splitlines(keepends=True)
    # inside parentheses the value comes all at once, still cut into pieces
    evs = parse('[python(code=("a\\nb"))]', streams={"python": {"code": "line"}})
    assert [e.text for e in evs if isinstance(e, TextChunk)] == ["a\n", "b"]


def test_limits() -> None:
    evs = parse("[f(a=[[1]]), f(a=[[[1]]])]", max_depth=3)
    assert done_calls(evs) == [("f", {"a": [[1]]})]
    assert reasons(evs) == ["nesting deeper than 3 levels"]
    evs = parse(["[f(a='", "x" * 600, "y" * 600, "'), g()] after"], max_arg_chars=1000,
                streams={"f": {"a": "raw"}})
    check_grammar(evs)
    assert reasons(evs) == ["arguments exceed 1000 characters"]
    assert sum(len(e.text) for e in evs if isinstance(e, TextChunk)) <= 1000
    assert normalize(evs)[-2] == Text("after")
    deep = "[" * 10_000 + "]" * 10_000
    evs = parse(f"[f(a={deep}), g()] ok")
    assert reasons(evs) == ["nesting deeper than 256 levels"] and normalize(evs)[-2] == Text("ok")


def test_calls_are_numbered_with_ids() -> None:
    evs = parse("[f(), g()]")
    assert [(e.index, e.id) for e in evs if isinstance(e, CallStarted)] == [
        (0, "call_t_0"), (1, "call_t_1")]
    assert type(get_parser("pythonic")).__name__ == "PythonicParser"


# -- hostile input -------------------------------------------------------------------------

FULL = ("<|python_start|>[search(q='it\\'s \"x\"', tags=['a', (1, 2.5e-3)], opts={'k': {'n': "
        "None}}, code='''def f():\n    return \"\\N{BULLET}\"\n''', flag=True, n=-0x1f), "
        "g()]<|python_end|>")


def test_truncated_at_every_position() -> None:
    for cut in range(1, len(FULL)):
        prefix = FULL[:cut]
        for pieces in ([prefix], split(prefix, range(0, cut, 7))):
            evs = parse(pieces, streams={"search": {"code": "statement"}})
            check_grammar(evs)
            started = {e.index for e in evs if isinstance(e, CallStarted)}
            done = {e.index for e in evs if isinstance(e, CallDone)}
            for i in started - done:
                assert any(isinstance(e, CallMalformed) and e.index == i
                           and e.reason.startswith("truncated") for e in evs), prefix
            if cut < FULL.index("), g()"):
                assert not done


VOCAB = ["[", "]", "(", ")", "{", "}", "f", "g", "x=", "=", ",", ":", " ", "\n", "'", '"', "'''",
         "\\", "\\x", "\\N{", "1", "-", ".", "e", "0x", "True", "None", "r", "b", "f'", "#",
         "<|python_start|>", "<|python_end|>", "<|python", "[f(", "a", "_"]


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_garbage(data: st.DataObject) -> None:
    text = "".join(data.draw(st.lists(st.sampled_from(VOCAB), max_size=30)))
    if data.draw(BOOL):
        text = "[f(" + text
    kw: dict[str, Any] = {"streams": {"f": {"x": "statement"}}, "tools": ["f", "g"]}
    whole = parse(text, **kw)
    check_grammar(whole)
    events = parse(split(text, draw_cuts(data, text)), **kw)
    check_grammar(events)
    assert normalize(events) == normalize(whole)
    assert all(e.reason for e in events if isinstance(e, CallMalformed))


def test_big_argument_is_not_buffered() -> None:
    chunk = "abcdefgh" * (64 * 1024 // 8)

    def stream() -> Iterator[str]:
        yield "[python(code='"
        for i in range(30 * 1024 * 1024 // len(chunk)):
            yield chunk[:-8] + f"{i:08d}"
        yield "')] bye"

    parser = PythonicParser(id_prefix="t", streams={"python": {"code": "line"}})
    kinds: dict[str, int] = {}
    tracemalloc.start()
    try:
        for delta in stream():
            for e in parser.feed(delta):
                kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        for e in parser.close():
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kinds.get("CallMalformed") == 1 and "CallDone" not in kinds, kinds
    assert peak < 24 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_linear_time() -> None:
    def per_char(n_items: int) -> float:
        text = "[f(xs=[" + ", ".join(f"'item {i}'" for i in range(n_items)) + "])]"
        p = PythonicParser()
        t0 = time.perf_counter()
        for i in range(0, len(text), 4):
            p.feed(text[i:i + 4])
        p.close()
        return (time.perf_counter() - t0) / len(text)

    small, big = min(per_char(500) for _ in range(3)), min(per_char(8000) for _ in range(3))
    assert big < 4 * small, (small, big)


# -- against vLLM's own parsers ----------------------------------------------------------------

def vllm_parsers() -> tuple[Any, Any]:
    try:
        from vllm.tool_parsers.llama4_pythonic_tool_parser import Llama4PythonicToolParser
        from vllm.tool_parsers.pythonic_tool_parser import PythonicToolParser
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
        pytest.skip(f"vllm is not importable ({type(e).__name__}: {e})")
    return PythonicToolParser, Llama4PythonicToolParser


def vllm_calls(cls: Any, text: str) -> list[tuple[str, Any]] | None:
    info = cls(None).extract_tool_calls(text, None)    # the tokenizer is only stored
    if not info.tools_called:
        return None
    return [(c.function.name, json.loads(c.function.arguments)) for c in info.tool_calls]


def vllm_stream(cls: Any, pieces: list[str]) -> tuple[list[str], list[list[int]]]:
    """vLLM's streamed arguments per call, and after each delta how long each call's were."""
    parser = cls(None)
    args: list[str] = []
    lengths: list[list[int]] = []
    prev = ""
    for piece in pieces:
        cur = prev + piece
        msg = parser.extract_tool_calls_streaming(prev, cur, piece, [], [], [], None)
        prev = cur
        for tc in (msg.tool_calls if msg is not None and msg.tool_calls else []):
            while len(args) <= tc.index:
                args.append("")
            if tc.function is not None and tc.function.arguments:
                args[tc.index] += tc.function.arguments
        lengths.append([len(a) for a in args])
    return args, lengths


def json_final_offsets(args: dict[str, Any]) -> dict[str, int]:
    """Where in ``json.dumps(args)`` each member is final (a number: once its delimiter is in)."""
    items = list(args.items())
    out = {}
    for i, (k, v) in enumerate(items):
        end = len(json.dumps(dict(items[:i + 1]), ensure_ascii=False)) - 1
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        out[k] = end + (1 if number else 0)
    return out


@pytest.mark.vllm
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_same_calls_as_vllm(data: st.DataObject) -> None:
    pythonic, llama4 = vllm_parsers()
    text, expected, _, _ = draw_message(data, vllm_safe=True)
    ours = [(n, as_json(a)) for n, a in done_calls(parse(text))]
    assert_same_floats(ours, expected)
    assert vllm_calls(pythonic, text) == ours
    assert vllm_calls(llama4, "<|python_start|>" + text + "<|python_end|>") == ours



@pytest.mark.vllm
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_streamed_fields_no_later_than_vllm(data: st.DataObject) -> None:
    """Each argument is final in our events no later than in vLLM's streamed arguments."""
    pythonic, _ = vllm_parsers()
    text, expected, _, _ = draw_message(data, vllm_safe=True)
    rng = random.Random(data.draw(st.integers(0, 2 ** 32)))
    pieces = split(text, sorted(rng.sample(range(len(text)), len(text) // 3)))
    parser = PythonicParser(id_prefix="t")
    ours: dict[tuple[int, str], int] = {}
    for d, piece in enumerate(pieces):
        for e in parser.feed(piece):
            if isinstance(e, FieldDone) and len(e.path) == 1:
                ours[e.index, str(e.path[0])] = d
    parser.close()
    streamed, lengths = vllm_stream(pythonic, pieces)
    for index, (_, args) in enumerate(expected):
        final_json = json.dumps(args, ensure_ascii=False)
        if index < len(streamed) and final_json.startswith(streamed[index]):
            for key, offset in json_final_offsets(args).items():
                theirs = next((d for d, ls in enumerate(lengths)
                               if index < len(ls) and ls[index] >= offset), len(pieces))
                # vLLM takes '' as final at once, though one more ' would open a triple quote
                assert ours[index, key] <= theirs or args[key] == "", (key, pieces)
