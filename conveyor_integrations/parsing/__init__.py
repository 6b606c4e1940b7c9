"""Incremental tool-call parsers: a model's stream in, typed events out, O(total length).

One module per wire format, all with the same interface (:class:`ToolCallParser`)::

    >>> from conveyor_integrations.parsing import get_parser
    >>> p = get_parser("hermes", id_prefix="t", streams={"python": {"code": "line"}})
    >>> evs = p.feed('<tool_call>{"name": "python", "arguments": {"code": "a = 1\\\\nb')
    >>> [type(e).__name__ for e in evs]
    ['CallStarted', 'TextChunk']
    >>> evs[-1].text
    'a = 1\\n'

Formats: ``openai`` (streamed ``tool_calls`` deltas), ``hermes`` (``<tool_call>`` JSON, Qwen),
``llama3_json``, ``mistral`` (``[TOOL_CALLS]``), ``fenced_code`` (```` ```python ```` blocks
as calls), ``plan`` (LLMCompiler-style numbered plans), ``pythonic`` (Llama 3.2/4
``[f(x=1), g(y='a')]`` lists), ``qwen3_xml`` (Qwen3-Coder ``<function=...>`` XML), ``harmony``
(gpt-oss ``to=functions.NAME`` channels), ``deepseek_v3`` (DeepSeek V3/R1/V3.1
``<｜tool▁call▁begin｜>``), ``glm45`` (GLM-4.5/4.6/4.7 ``<arg_key>``/``<arg_value>``),
``kimi_k2`` (Kimi K2 ``<|tool_call_begin|>functions.NAME:0``).
:mod:`.detect` chooses one for ``tool_format="auto"`` from a chat template or a model name.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .base import ParserBase, ParserOptions, ToolCallParser, Unit
from .deepseek import DeepSeekV3Parser
from .fenced_code import FencedCodeParser
from .glm45 import Glm45Parser
from .harmony import HarmonyParser
from .hermes import HermesParser
from .kimi_k2 import KimiK2Parser
from .llama3_json import Llama3JsonParser
from .mistral import MistralParser
from .openai_deltas import OpenAIDeltaParser
from .plan import PlanParser
from .pythonic import PythonicParser
from .qwen3_xml import Qwen3XmlParser

__all__ = [
    "PARSERS",
    "DeepSeekV3Parser",
    "FencedCodeParser",
    "Glm45Parser",
    "HarmonyParser",
    "HermesParser",
    "KimiK2Parser",
    "Llama3JsonParser",
    "MistralParser",
    "OpenAIDeltaParser",
    "ParserBase",
    "ParserOptions",
    "PlanParser",
    "PythonicParser",
    "Qwen3XmlParser",
    "ToolCallParser",
    "Unit",
    "get_parser",
]

PARSERS: Mapping[str, type[ParserBase]] = MappingProxyType({
    "openai": OpenAIDeltaParser,
    "hermes": HermesParser,
    "llama3_json": Llama3JsonParser,
    "mistral": MistralParser,
    "fenced_code": FencedCodeParser,
    "plan": PlanParser,
    "pythonic": PythonicParser,
    "qwen3_xml": Qwen3XmlParser,
    "harmony": HarmonyParser,
    "deepseek_v3": DeepSeekV3Parser,
    "glm45": Glm45Parser,
    "kimi_k2": KimiK2Parser,
})
"""Format name -> parser class."""


def get_parser(name: str, **kwargs: Any) -> ToolCallParser:
    """A new parser for the wire format ``name``; ``kwargs`` go to its constructor.

    >>> type(get_parser("mistral")).__name__
    'MistralParser'
    >>> get_parser("xml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown tool-call format 'xml'; known: deepseek_v3, fenced_code, glm45, ...
    """
    try:
        cls = PARSERS[name]
    except KeyError:
        raise ValueError(f"unknown tool-call format {name!r}; known: "
                         f"{', '.join(sorted(PARSERS))}") from None
    parser: ToolCallParser = cls(**kwargs)
    return parser
