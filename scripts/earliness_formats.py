"""Each family's rendering of assistant tool calls, for scripts/earliness_server_vs_client.py:
label -> (our format, vLLM's parser of it, render(calls) -> the message as the chat template
writes it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Call = tuple[str, dict[str, Any]]

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "search", "description": "Search.", "parameters": {
        "type": "object", "properties": {
            "query": {"type": "string"}, "k": {"type": "integer"},
            "filters": {"type": "array", "items": {"type": "string"}},
            "note": {"type": "string"}}, "required": ["query"]}}},
    {"type": "function", "function": {"name": "python", "description": "Run code.", "parameters": {
        "type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}}},
]

SPECIAL = ["<|python_tag|>", "[TOOL_CALLS]", "<tool_call>", "</tool_call>",
           "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
           "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "<arg_key>", "</arg_key>", "<arg_value>",
           "</arg_value>", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>",
           "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"]
"""Markers that are one token in their family's tokenizer (added to the bundled one)."""


def _hermes(calls: list[Call]) -> str:
    return "Let me check.\n" + "\n".join(
        f"<tool_call>\n{json.dumps({'name': n, 'arguments': a}, ensure_ascii=False)}\n"
        "</tool_call>" for n, a in calls)


def _llama3_json(calls: list[Call]) -> str:
    return "; ".join(json.dumps({"name": n, "parameters": a}, ensure_ascii=False)
                     for n, a in calls)


def _mistral(calls: list[Call]) -> str:
    return "[TOOL_CALLS]" + json.dumps([{"name": n, "arguments": a} for n, a in calls],
                                       ensure_ascii=False)


def _pythonic(calls: list[Call]) -> str:
    return "[" + ", ".join(f"{n}(" + ", ".join(f"{k}={v!r}" for k, v in a.items()) + ")"
                           for n, a in calls) + "]"


def _raw(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _qwen3_xml(calls: list[Call]) -> str:
    return "Let me check.\n" + "\n".join(
        f"<tool_call>\n<function={n}>\n" + "".join(
            f"<parameter={k}>\n{_raw(v)}\n</parameter>\n" for k, v in a.items())
        + "</function>\n</tool_call>" for n, a in calls)


def _args(a: dict[str, Any]) -> str:
    return json.dumps(a, ensure_ascii=False)


def _deepseek_v31(calls: list[Call]) -> str:
    return "Let me check." + "<｜tool▁calls▁begin｜>" + "".join(
        f"<｜tool▁call▁begin｜>{n}<｜tool▁sep｜>{_args(a)}<｜tool▁call▁end｜>" for n, a in calls
    ) + "<｜tool▁calls▁end｜>"


def _deepseek_v3(calls: list[Call]) -> str:
    return "Let me check." + "<｜tool▁calls▁begin｜>" + "\n".join(
        f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{n}\n```json\n{_args(a)}\n```"
        "<｜tool▁call▁end｜>" for n, a in calls) + "<｜tool▁calls▁end｜>"


def _glm45(calls: list[Call]) -> str:
    return "Let me check.\n" + "\n".join(
        f"<tool_call>{n}\n" + "".join(
            f"<arg_key>{k}</arg_key>\n<arg_value>{_raw(v)}</arg_value>\n" for k, v in a.items())
        + "</tool_call>" for n, a in calls)


def _kimi_k2(calls: list[Call]) -> str:
    return "Let me check." + "<|tool_calls_section_begin|>" + "".join(
        f"<|tool_call_begin|>functions.{n}:{i}<|tool_call_argument_begin|>{_args(a)}"
        "<|tool_call_end|>" for i, (n, a) in enumerate(calls)) + "<|tool_calls_section_end|>"


FORMATS: dict[str, tuple[str, str, Callable[[list[Call]], str]]] = {
    "hermes": ("hermes", "hermes", _hermes),
    "llama3_json": ("llama3_json", "llama3_json", _llama3_json),
    "mistral": ("mistral", "mistral", _mistral),
    "pythonic": ("pythonic", "pythonic", _pythonic),
    "qwen3_xml": ("qwen3_xml", "qwen3_coder", _qwen3_xml),
    "deepseek_v3": ("deepseek_v3", "deepseek_v3", _deepseek_v3),
    "deepseek_v3 (V3.1 form)": ("deepseek_v3", "deepseek_v31", _deepseek_v31),
    "glm45": ("glm45", "glm45", _glm45),
    "kimi_k2": ("kimi_k2", "kimi_k2", _kimi_k2),
}
