"""Micro-benchmark of the parsers: microseconds of parser CPU per decoded token.

Not collected by pytest (the name does not start with ``test_``). Run::

    .venv/bin/python tests/parsing/bench_parsers.py

A "token" is a ~4-character delta, as a model's detokenizer would emit. Each figure is the
best of several runs of the whole stream (feed every delta, then close), divided by the
number of deltas, in process CPU time (so that other load on the machine distorts it less).
Cost must be flat in the stream's length: compare 1k / 3k / 10k tokens.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from conveyor_integrations.parsing import get_parser

BLOCK = '''import math
from collections import Counter


def score(words, weights=None):
    """Weighted score of a list of words."""
    weights = weights or {}
    total = 0.0
    for i, w in enumerate(words):
        if w in weights:
            total += weights[w] * math.log(i + 2)
        elif w.isdigit():
            total += int(w) / 10
        else:
            total += len(w) ** 0.5
    return total


counts = Counter("the quick brown fox jumps over the lazy dog".split())
data = {"a": [1, 2, 3], "b": {"c": 'x\\ty'}, "s": "quote \\" inside"}
result = [score(k.split(), {"the": 2}) for k in counts]
print(f"{len(result)} results, best={max(result):.3f}")
'''


def code_of(n_tokens: int) -> str:
    """Python source whose JSON argument text is about ``4 * n_tokens`` characters."""
    out, size, i = [], 0, 0
    while size < 4 * n_tokens:
        block = BLOCK.replace("score", f"score{i}").replace("counts", f"counts{i}")
        out.append(block)
        size += len(json.dumps(block)) - 2
        i += 1
    text = "".join(out)
    while len(json.dumps(text)) - 2 > 4 * n_tokens:
        text = text[: len(text) - 40]
    return text


def tokens(text: str, size: int = 4) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def run(make: Callable[[], Any], deltas: list[Any], repeat: int) -> float:
    """Best-of-``repeat`` microseconds per delta for the whole stream."""
    times = []
    for _ in range(repeat):
        parser = make()
        t0 = time.process_time()
        for d in deltas:
            parser.feed(d)
        parser.close()
        times.append(time.process_time() - t0)
    return min(times) / len(deltas) * 1e6


def hermes_code(n: int) -> list[str]:
    msg = ('<tool_call>\n{"name": "python", "arguments": {"code": '
           + json.dumps(code_of(n)) + "}}\n</tool_call>")
    return tokens(msg)


def openai_code(n: int) -> list[dict[str, Any]]:
    args = json.dumps({"code": code_of(n)})
    first = {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                             "function": {"name": "python", "arguments": ""}}]}
    return [first] + [{"tool_calls": [{"index": 0, "function": {"arguments": t}}]}
                      for t in tokens(args)]


def small_calls(n_calls: int) -> list[str]:
    msg = "".join(
        '<tool_call>\n{"name": "search", "arguments": {"query": "weather in city number '
        f'{i}", "k": {i % 7}, "filters": ["news", "web"]}}}}\n</tool_call>\n'
        for i in range(n_calls))
    return tokens(msg)


def qwen3_xml_code(n: int) -> list[str]:
    msg = ("<tool_call>\n<function=python>\n<parameter=code>\n" + code_of(n)
           + "\n</parameter>\n</function>\n</tool_call>")
    return tokens(msg)


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    streams = {"python": {"code": "statement"}}
    rows: list[tuple[str, int, float]] = []

    def bench(label: str, fmt: str, deltas: list[Any], **kw: Any) -> None:
        us = run(lambda: get_parser(fmt, id_prefix="b", **kw), deltas, repeat)
        rows.append((label, len(deltas), us))
        print(f"{label:<52} {len(deltas):>7} tokens  {us:6.2f} us/token", flush=True)

    for n in (1000, 3000, 10000):
        bench(f"hermes, code arg, statement-streamed ({n // 1000}k)", "hermes", hermes_code(n),
              streams=streams)
    for n in (1000, 3000, 10000):
        bench(f"openai deltas, code arg, statement-streamed ({n // 1000}k)", "openai",
              openai_code(n), streams=streams)
    bench("hermes, code arg, line-streamed (3k)", "hermes", hermes_code(3000),
          streams={"python": {"code": "line"}})
    bench("hermes, code arg, raw-streamed (3k)", "hermes", hermes_code(3000),
          streams={"python": {"code": "raw"}})
    bench("hermes, code arg, not streamed (3k)", "hermes", hermes_code(3000))
    for n in (100, 500, 2000):
        bench(f"hermes, {n} small calls", "hermes", small_calls(n))
    fenced = tokens("Here:\n```python\n" + code_of(3000) + "```\nDone.")
    bench("fenced_code, statement unit (3k)", "fenced_code", fenced)
    for n in (1000, 3000, 10000):
        bench(f"qwen3_xml, code arg, statement-streamed ({n // 1000}k)", "qwen3_xml",
              qwen3_xml_code(n), streams=streams)
    bench("qwen3_xml, code arg, line-streamed (3k)", "qwen3_xml", qwen3_xml_code(3000),
          streams={"python": {"code": "line"}})

    def flat(prefix: str) -> None:
        vals = [us for label, _, us in rows if prefix in label]
        if len(vals) >= 2:
            print(f"  flatness {prefix!r}: max/min = {max(vals) / min(vals):.2f}"
                  f" (median {statistics.median(vals):.2f} us/token)")

    flat("hermes, code arg, statement")
    flat("openai deltas")
    flat("small calls")
    flat("qwen3_xml, code arg, statement")


if __name__ == "__main__":
    main()
