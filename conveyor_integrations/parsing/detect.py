"""``tool_format="auto"``: the wire format a model writes, from its chat template or its name.

A chat template that renders tools says how the model writes calls (its instructions and its
rendering of earlier calls carry the format's own markers); a served model's name says its
family. Each family is checked in order (Qwen3-Coder's template also holds ``<tool_call>``, so
it comes before Hermes). A family this library has no parser for, or a template or name that
matches none, raises :class:`UnknownToolFormat`, whose message names the formats there are and
how to choose one: never a silent guess. Written by hand: no library maps templates to tool
parsers (vLLM's server is told ``--tool-call-parser`` by its user). Example::

    >>> format_from_template("... <tool_call>\\n{\\"name\\": <function-name>, ...} </tool_call>")
    'hermes'
    >>> format_from_model_name("Qwen/Qwen2.5-7B-Instruct")
    'hermes'
    >>> try:
    ...     format_from_model_name("my-own-model")
    ... except UnknownToolFormat as exc:
    ...     print(str(exc)[:70])
    cannot tell which tool-call format model 'my-own-model' writes: its na
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["FAMILIES", "Family", "UnknownToolFormat", "format_from_model_name",
           "format_from_template"]


class UnknownToolFormat(ValueError):
    """The tool-call format of a model cannot be chosen automatically (the message says why
    and how to name one)."""


@dataclass(frozen=True)
class Family:
    """A model family: the parser of its calls (None: none yet), the markers its chat template
    holds (all of them) and a pattern of its model names."""

    label: str
    format: str | None
    markers: tuple[str, ...]
    names: str


FAMILIES: tuple[Family, ...] = (
    Family("gpt-oss (harmony)", "harmony", ("<|channel|>", "<|message|>", "to=functions"),
           r"gpt[-_]?oss"),
    Family("DeepSeek V3.2 / V4 (DSML)", None, ("｜DSML｜",), r"deepseek-v(3\.2(?!-exp)|4)"),
    Family("DeepSeek V3 / R1 / V3.1", "deepseek_v3", ("tool▁call▁begin",), r"deepseek"),
    Family("Kimi K2", "kimi_k2", ("<|tool_call_begin|>",), r"kimi[-_.]?k2"),
    Family("GLM-4.5 / 4.6 / 4.7", "glm45", ("<arg_key>", "<arg_value>"),
           r"glm-?(4\.[5-7]|5)"),
    Family("Qwen3-Coder", "qwen3_xml", ("<function=", "<parameter="), r"qwen3-?coder"),
    Family("Hermes / Qwen", "hermes", ("<tool_call>",), r"qwen|hermes|smollm|nous"),
    Family("Mistral", "mistral", ("[TOOL_CALLS]",), r"mistral|mixtral|ministral|devstral"),
    Family("pythonic (Llama 4, Llama 3.2's pythonic template)", "pythonic",
           ("[func_name1(params_name1=params_value1",), r"llama-?4"),
    Family("Llama 3.x (JSON)", "llama3_json",
           ('"parameters": dictionary of argument name and its value',), r"llama-?3"),
)
"""The families ``auto`` knows, in the order they are checked."""


def _help(known: Collection[str]) -> str:
    names = ", ".join(sorted(n for n in known if n not in ("openai", "fenced_code", "plan")))
    return (f"Pass tool_format=one of: {names}, openai (a server that parses tool calls "
            "itself), fenced_code, plan")


def _checked(family: Family, known: Collection[str], what: str) -> str:
    if family.format is None or family.format not in known:
        raise UnknownToolFormat(
            f"{what} writes {family.label} tool calls, and this library has no parser for them "
            f"yet. {_help(known)}, if the model is prompted to write one of those.")
    return family.format


def _known(known: Collection[str] | None) -> Collection[str]:
    if known is None:
        from . import PARSERS

        return PARSERS
    return known


def format_from_template(template: str, *, known: Collection[str] | None = None) -> str:
    """The format a model with this chat template writes; :class:`UnknownToolFormat` when no
    family's markers are all in it, or its family has no parser (``known``: the formats there
    are, by default the registry's)."""
    have = _known(known)
    for family in FAMILIES:
        if all(m in template for m in family.markers):
            return _checked(family, have, "a model with this chat template")
    raise UnknownToolFormat("cannot tell which tool-call format this chat template asks for: "
                            f"it holds none of the markers of {len(FAMILIES)} known families. "
                            f"{_help(have)}.")


def format_from_model_name(name: str, *, known: Collection[str] | None = None) -> str:
    """The format the model ``name`` (a served model, a hub id, a path) writes, by its family's
    name; :class:`UnknownToolFormat` when no family matches or its family has no parser."""
    have = _known(known)
    base = name.rstrip("/").rsplit("/", 1)[-1].lower()
    for family in FAMILIES:
        if re.search(family.names, base):
            return _checked(family, have, f"model {name!r}")
    raise UnknownToolFormat(f"cannot tell which tool-call format model {name!r} writes: its "
                            f"name is of no family this library knows. {_help(have)}.")
