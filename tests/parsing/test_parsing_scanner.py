"""The incremental JSON scanner: strictness against json.loads, escapes across chunks, events."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parsing_support import draw_cuts, draw_dumps, json_args, split

from conveyor_integrations.parsing.json_scanner import JsonScanner

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


class Recorder:
    def __init__(self, stream: set[tuple[Any, ...]] | None = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.chunks: dict[tuple[Any, ...], list[str]] = {}
        self.scanner = JsonScanner(on_member=self.member, on_item=self.item, on_chunk=self.chunk)
        if stream:
            self.scanner.stream_paths = stream

    def member(self, path: tuple[Any, ...], value: Any) -> None:
        self.events.append(("member", path, value))

    def item(self, path: tuple[Any, ...], i: int, value: Any) -> None:
        self.events.append(("item", path, i, value))

    def chunk(self, path: tuple[Any, ...], text: str) -> None:
        assert text
        self.chunks.setdefault(path, []).append(text)

    def feed(self, pieces: list[str]) -> int:
        used = 0
        for p in pieces:
            used += self.scanner.feed(p)
            if self.scanner.done or self.scanner.failed:
                break
        return used


def expected_events(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out += expected_events(v, path + (k,))
            out.append(("member", path + (k,), v))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += expected_events(v, path + (i,))
            out.append(("item", path, i, v))
    return out


@SETTINGS
@given(st.data())
def test_valid_objects_any_split(data: st.DataObject) -> None:
    obj = data.draw(json_args)
    obj["s"] = data.draw(st.text(max_size=30))
    text = draw_dumps(data, obj) + data.draw(st.sampled_from(["", " ", "  x", "</tool_call>"]))
    end = text.rindex("}") + 1
    ref = json.loads(text[:end])
    rec = Recorder(stream={("s",)})
    used = rec.feed(split(text, draw_cuts(data, text)))
    assert rec.scanner.done and rec.scanner.error is None
    assert rec.scanner.value == ref
    assert used == end
    assert rec.events == expected_events(ref)
    assert "".join(rec.chunks.get(("s",), [])) == ref["s"]


# -- strictness: mutate valid JSON, compare the verdict with json.loads ------------------

MUTATIONS = ['"', "\\", ",", ":", "{", "}", "[", "]", "0", "-", ".", "e", "+", " ", "\n",
             "\x01", "u", "t", "n", "f", "\\u", "\\ud83d", "\\ude00", "NaN", "1e", "01",
             "true", "nul", "\\x"]


def json_loads_verdict(text: str) -> Any:
    """json.loads, made as strict as the scanner promises to be."""
    def no_constants(name: str) -> Any:
        raise ValueError(name)
    value = json.loads(text, parse_constant=no_constants)
    if not isinstance(value, dict):
        raise TypeError("not an object")
    if re.search("[\ud800-\udfff]", json.dumps(value, ensure_ascii=False)):
        # a surrogate survived: json.loads accepts lone surrogates, the scanner must not
        raw = json.dumps(value, ensure_ascii=False)
        if re.search("[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]",
                     raw):
            raise ValueError("lone surrogate")
    return value


@settings(max_examples=600, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_json_matches_json_loads(data: st.DataObject) -> None:
    text = draw_dumps(data, data.draw(json_args))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        ins = data.draw(st.sampled_from(MUTATIONS))
        if op == "insert":
            text = text[:i] + ins + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1:]
        else:
            text = text[:i] + ins + text[i + len(ins):]
    try:
        ref: Any = json_loads_verdict(text)
    except (ValueError, TypeError):
        ref = None
    rec = Recorder()
    used = rec.feed(split(text, draw_cuts(data, text)))
    ok = rec.scanner.done and text[used:].strip(" \t\n\r") == ""
    if ref is None:
        assert not ok, text
    else:
        assert ok, (text, rec.scanner.error)
        assert rec.scanner.value == ref


# -- escapes across chunk boundaries ---------------------------------------------------

@pytest.mark.parametrize("s", ["😀", "a\U0010ffffb", "\n\"\\/\b\f\r\t", "é\u2028\x00",
                               "𝄞x𝄞"])
def test_escapes_split_everywhere(s: str) -> None:
    text = json.dumps({"k": s})
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            rec = Recorder(stream={("k",)})
            rec.feed([text[:i], text[i:j], text[j:]])
            assert rec.scanner.value == {"k": s}
            assert "".join(rec.chunks[("k",)]) == s


@pytest.mark.parametrize("text,reason", [
    ('{"a": "\\ud83d"}', "lone surrogate"),
    ('{"a": "\\ud83dx"}', "lone surrogate"),
    ('{"a": "\\ude00"}', "lone surrogate"),
    ('{"a": "\\ud83d\\u0041"}', "lone surrogate"),
    ('{"a": "\\x41"}', "invalid escape"),
    ('{"a": "\\u12G4"}', "invalid escape"),
    ('{"a": "tab\there"}', "control character"),
    ('{"a": 1,}', "expected a string key"),
    ('{"a": [1,]}', "unexpected character"),
    ('{"a": 01}', "invalid number"),
    ('{"a": 1.}', "invalid number"),
    ('{"a": .5}', "unexpected character"),
    ('{"a": NaN}', "unexpected character"),
    ('{"a": -Infinity}', "invalid number"),
    ('{"a": tru}', "invalid literal"),
    ('{"a": truex}', "expected ','"),
    ('{"a": nullnull}', "expected ','"),
    ('{"q": "first", "q": "a"}', "duplicate key 'q'"),
    ('{"a": {"b": 1, "b": 1}}', "duplicate key 'b'"),
    ('{"a": "\ud83d"}', "lone surrogate"),         # a raw lone high surrogate
    ('{"a": "x\ude00y"}', "lone surrogate"),       # a raw lone low surrogate
    ('{"a" 1}', "expected ':'"),
    ("{'a': 1}", "expected a string key"),
    ('[1, 2]', "expected a JSON object"),
    ('"x"', "expected a JSON object"),
    ('{"a": 1} ', None),
])
def test_strict_rejections(text: str, reason: str | None) -> None:
    """Rejected whole or one character at a time, with the same reason; escaped and raw lone
    surrogates alike; a repeated key (whose first value was reported final) is malformed."""
    for pieces in ([text], list(text)):
        sc = JsonScanner()
        for p in pieces:
            sc.feed(p)
        if reason is None:
            assert sc.done
        else:
            assert sc.failed and sc.error is not None and reason in sc.error, sc.error


def test_number_final_only_at_delimiter() -> None:
    rec = Recorder()
    rec.feed(['{"a": 12'])
    assert rec.events == []
    rec.feed(["3"])
    assert rec.events == []
    rec.feed([" , "])
    assert rec.events == [("member", ("a",), 123)]
    rec.feed(['"b": tr', "ue"])              # a literal needs no delimiter: nothing extends it
    assert rec.events == [("member", ("a",), 123), ("member", ("b",), True)]
    rec.feed(["}"])
    assert rec.events == [("member", ("a",), 123), ("member", ("b",), True)]
    assert rec.scanner.done


def test_depth_limit_and_skip() -> None:
    sc = JsonScanner(max_depth=5)
    text = '{"a": ' + "[" * 10 + "]" * 10 + '} tail'
    used = sc.feed(text)
    assert sc.failed and "nesting deeper than 5" in (sc.error or "")
    sc.skip()
    rest = text[used:]
    used2 = sc.feed(rest)
    assert sc.ended and rest[used2:] == " tail"


def test_skip_handles_strings_and_escapes() -> None:
    text = '{"a": "x\\y", "b": "}\\"]", "c": [1]} after'
    sc = JsonScanner()
    used = sc.feed(text)
    assert sc.failed
    sc.skip()
    tail = "".join(text[used:])
    consumed = 0
    for ch in tail:  # one character at a time, escapes split
        consumed += sc.feed(ch)
        if sc.ended:
            break
    assert tail[consumed:] == " after"


def test_errors_never_raise_and_feed_after_end_is_zero() -> None:
    sc = JsonScanner()
    assert sc.feed('{"a": 1}') == 8 and sc.done
    assert sc.feed("more") == 0
    bad = JsonScanner()
    bad.feed("\x00\x01{")
    assert bad.failed and bad.feed("{}") == 0


def test_literals_are_final_at_their_last_character() -> None:
    seen: list[tuple[Any, Any]] = []
    sc = JsonScanner(on_member=lambda path, value: seen.append((path, value)))
    sc.feed('{"a": tru')
    assert seen == []
    sc.feed('e')
    assert seen == [(("a",), True)]
    sc.feed(', "b": nul')
    sc.feed('l')
    assert seen[-1] == (("b",), None)
    sc.feed(', "c": fals')
    sc.feed('e')
    assert seen[-1] == (("c",), False)
    sc.feed("}")
    assert sc.done and sc.value == {"a": True, "b": None, "c": False}


def test_the_same_key_in_different_objects_is_not_a_duplicate() -> None:
    sc = JsonScanner()
    sc.feed('{"a": {"k": 1}, "b": {"k": 2}, "k": [{"k": 3}, {"k": 4}]}')
    assert sc.done and sc.value["k"] == [{"k": 3}, {"k": 4}]
