"""Helpers shared by the parsing tests: feeding, normalising events, hypothesis strategies."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from typing import Any

from hypothesis import strategies as st

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
from conveyor_integrations.parsing.base import ToolCallParser


def feed_all(parser: ToolCallParser, deltas: Iterable[Any]) -> list[Event]:
    out: list[Event] = []
    for d in deltas:
        out += parser.feed(d)
    out += parser.close()
    return out


def split(text: str, cuts: Iterable[int]) -> list[str]:
    points = sorted({c for c in cuts if 0 < c < len(text)})
    pieces, last = [], 0
    for p in points:
        pieces.append(text[last:p])
        last = p
    pieces.append(text[last:])
    return pieces


def normalize(events: Sequence[Event]) -> list[Event]:
    """Merge adjacent Text events, and adjacent TextChunks of one field (raw units vary)."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, Text):
            if not e.text:
                continue
            if out and isinstance(out[-1], Text):
                out[-1] = Text(out[-1].text + e.text)
                continue
        if isinstance(e, TextChunk) and out and isinstance(out[-1], TextChunk) \
                and out[-1].index == e.index and out[-1].path == e.path:
            out[-1] = TextChunk(e.index, e.path, out[-1].text + e.text)
            continue
        out.append(e)
    return out


def check_grammar(events: Sequence[Event]) -> None:
    """Per call: CallStarted (Field|Item|TextChunk)* then CallDone or CallMalformed."""
    assert events and isinstance(events[-1], StreamDone)
    assert sum(isinstance(e, StreamDone) for e in events) == 1
    started: set[int] = set()
    ended: set[int] = set()
    chunks: dict[tuple[int, Any], list[str]] = {}
    for e in events:
        if isinstance(e, CallStarted):
            assert e.index not in started and e.index not in ended
            started.add(e.index)
        elif isinstance(e, (FieldDone, ItemDone, TextChunk)):
            assert e.index in started and e.index not in ended, e
            if isinstance(e, TextChunk):
                assert e.text
                chunks.setdefault((e.index, e.path), []).append(e.text)
            elif isinstance(e, FieldDone) and (e.index, e.path) in chunks:
                assert "".join(chunks.pop((e.index, e.path))) == e.value
        elif isinstance(e, CallDone):
            assert e.index in started and e.index not in ended
            ended.add(e.index)
        elif isinstance(e, CallMalformed):
            assert e.index not in ended
            ended.add(e.index)
    assert started <= ended, "a started call never ended"


def calls(events: Sequence[Event]) -> list[CallDone | CallMalformed]:
    return [e for e in events if isinstance(e, (CallDone, CallMalformed))]


# -- strategies ----------------------------------------------------------------------------

SPECIAL_CHARS = ['"', "\\", "/", "\n", "\t", "\r", "\x00", "\x1f", "\u2028", "é", "😀",
                 "\U0001d11e", "\U0010ffff", "\ud7ff", "\ue000", "{", "}", "[", "]", ":", ","]
chars = st.one_of(st.characters(codec="utf-8"), st.sampled_from(SPECIAL_CHARS))
json_text = st.text(alphabet=chars, max_size=12)
json_leaf = (st.none() | st.booleans() | st.integers(-(10 ** 20), 10 ** 20)
             | st.floats(allow_nan=False, allow_infinity=False) | json_text)
json_values = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(alphabet=chars, max_size=6), c,
                                                        max_size=4),
    max_leaves=10)
json_args = st.dictionaries(st.text(alphabet=chars, max_size=8), json_values, max_size=4)

CODE_LINES = ["import os\n", "x = 1\n", "for i in range(3):\n", "    x += i\n", "\n",
              "# comment\n", "def f(a,\n", "      b):\n", "    return [\n", "1, 2]\n",
              "else:\n", "print(x)\n", 's = """\n', "doc\n", '"""\n', "@dec\n",
              "class A:\n", "    pass\n", "if x:\n", "try:\n", "except E:\n", "y = (1 +\n",
              "  2)\n", "z = '\\\\'\n", "emoji = '😀'\n", "    ", "x", "\t"]
code_text = st.lists(st.sampled_from(CODE_LINES), max_size=12).map("".join)


_BOOL = st.booleans()
_INDENT = st.sampled_from([None, None, 1])
_SEPARATORS = st.sampled_from([None, (",", ":"), (", ", ": ")])
_CUT_MODE = st.sampled_from(["random", "random", "fixed", "chars"])
_SIZE = st.integers(1, 9)
_SEED = st.integers(0, 2 ** 32)

# Plain functions drawing module-level strategies: building strategies inside a test costs
# hypothesis a validation pass per example, which dominated the run time.


def draw_dumps(data: st.DataObject, obj: Any) -> str:
    """json.dumps with random ensure_ascii / separators / indent."""
    return json.dumps(obj, ensure_ascii=data.draw(_BOOL), indent=data.draw(_INDENT),
                      separators=data.draw(_SEPARATORS))


def draw_cuts(data: st.DataObject, text: str) -> list[int]:
    """Where to cut ``text`` into deltas: every char, every k chars, or at random places."""
    n = len(text)
    mode = data.draw(_CUT_MODE)
    if mode == "chars" and n <= 400:
        return list(range(1, n))
    if mode != "random":
        size = data.draw(_SIZE)
        return list(range(size, n, size))
    rng = random.Random(data.draw(_SEED))
    return rng.sample(range(n + 1), rng.randint(0, max(1, n // 2)))
