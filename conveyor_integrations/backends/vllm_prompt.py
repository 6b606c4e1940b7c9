"""How :class:`~conveyor_integrations.backends.vllm_engine.VLLMEngine` shows tools to a model.

A model whose chat template renders ``tools`` (Qwen2.5, Hermes, Llama 3.1...) gets them that way
(:func:`native_messages`). A template without a tool section (SmolLM2's, the bundled model's) gets
Hermes text instead (:func:`hermes_messages`): the tool schemas in a system message
(:func:`tools_prompt`), earlier calls as ``<tool_call>`` text and results as
``<tool_response>`` user turns. :func:`tool_rendering` tells which of the two a template takes,
or that it shows tools neither way (the engine then warns once). :func:`forced_tool_call_tag`
is the grammar that forces a call for ``tool_choice="required"`` or a named tool, and
:func:`sampling_params` a request's vLLM ``SamplingParams`` (with that grammar).

Earlier assistant turns can come back as the model wrote them (a ``raw_text`` lookup; see
:mod:`.vllm_turns`, which keeps vLLM's prefix cache reused across an agent's turns).

Example::

    >>> from conveyor_integrations.backends.vllm_prompt import hermes_messages, tool_rendering
    >>> tools = [{"type": "function", "function": {"name": "lookup"}}]
    >>> msgs = hermes_messages([{"role": "user", "content": "Hi"}], tools)
    >>> [m["role"] for m in msgs], '"name": "lookup"' in msgs[0]["content"]
    (['system', 'user'], True)
    >>> def plain(messages, tools=None):        # a template that ignores tools and system turns
    ...     return "".join(m["content"] for m in messages if m["role"] == "user")
    >>> tool_rendering(plain) is None
    True
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .base import ChatRequest

__all__ = [
    "PROBE_TOOLS",
    "RawText",
    "forced_tool_call_tag",
    "hermes_messages",
    "native_messages",
    "sampling_params",
    "template_tool_format",
    "text_content",
    "tool_rendering",
    "tools_prompt",
]

Message = Mapping[str, Any]
Render = Callable[..., str]
"""``render(messages, tools=None) -> prompt text`` (a tokenizer's ``apply_chat_template``)."""
RawText = Callable[[Message], str | None]
"""An assistant message -> the model's own text for it (None: render the message's fields)."""

PROBE_TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "probe_tool_x", "parameters": {"type": "object"}}}
]
"""The tool that :func:`tool_rendering` looks for in a rendered prompt."""


def tools_prompt(tools: Sequence[Message]) -> str:
    """The Hermes tool instructions (as Qwen2.5 and Hermes models are prompted)."""
    schemas = "\n".join(json.dumps(dict(t), ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{schemas}\n</tools>\n\nFor each function call, return a json object with "
        "function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def forced_tool_call_tag(
    tools: Sequence[Message], tool_choice: str | Message | None
) -> dict[str, Any] | None:
    """The xgrammar structural tag forcing one Hermes tool call; None when nothing is forced.

    ``tool_choice``: "required" (any of ``tools``), ``{"type": "function", "function":
    {"name": N}}``, ``{"name": N}`` or a tool name; "auto", "none" and None force nothing.
    """
    if tool_choice is None or tool_choice in ("auto", "none"):
        return None
    functions = [dict(t.get("function", t)) for t in tools]
    if tool_choice != "required":
        name: Any = tool_choice
        if isinstance(tool_choice, Mapping):
            name = dict(tool_choice.get("function", tool_choice)).get("name")
        functions = [f for f in functions if f.get("name") == name]
        if not functions:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools")
    if not functions:
        raise ValueError("tool_choice='required' needs tools")
    tags = [{
        "type": "tag",
        "begin": '<tool_call>\n{"name": ' + json.dumps(f["name"]) + ', "arguments": ',
        "content": {"type": "json_schema", "json_schema": f.get("parameters") or {"type": "object"},
                    "max_whitespace_cnt": 1},
        "end": "}\n</tool_call>",
    } for f in functions]
    return {"type": "structural_tag",
            "format": tags[0] if len(tags) == 1 else {"type": "or", "elements": tags}}


def sampling_params(request: ChatRequest, *, keep_stop_token: bool = False) -> Any:
    """vLLM ``SamplingParams`` for a request: its ``sampling`` keys, deltas out, ``max_tokens``
    up to the context length unless given, and the forcing grammar when ``tool_choice`` forces a
    call (``structured_outputs`` may be a dict: ``json``/``regex``/``choice``...).

    With tools, special tokens stay in the text unless ``sampling`` says otherwise, as vLLM's
    server does for its tool parsers: in many tokenizers the call markers are special tokens
    (Mistral's ``[TOOL_CALLS]``, Kimi K2's ``<|tool_call_begin|>``, gpt-oss's ``<|channel|>``),
    and a parser of text cannot find a marker that was never detokenized. ``keep_stop_token``
    keeps the token that stopped decoding in the text too (gpt-oss ends a call with its stop
    token ``<|call|>``)."""
    from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

    kw = {k: v for k, v in request.sampling.items() if v is not None}
    if request.tools and request.tool_choice != "none":
        kw.setdefault("skip_special_tokens", False)
        if keep_stop_token:
            kw.setdefault("include_stop_str_in_output", True)
    if "max_completion_tokens" in kw:
        kw.setdefault("max_tokens", kw.pop("max_completion_tokens"))
    kw.setdefault("max_tokens", None)  # like OpenAI: up to the context length
    structured = kw.pop("structured_outputs", None)
    tag = forced_tool_call_tag(request.tools, request.tool_choice)
    if tag is not None:
        if structured is not None:
            raise ValueError("tool_choice forces a call: drop sampling['structured_outputs']")
        structured = StructuredOutputsParams(structural_tag=json.dumps(tag))
    elif isinstance(structured, Mapping):
        structured = StructuredOutputsParams(**structured)
    if structured is not None:
        kw["structured_outputs"] = structured
    return SamplingParams(output_kind=RequestOutputKind.DELTA, **kw)


def text_content(content: Any) -> str:
    """A message's content as text (the text parts of a list of content parts)."""
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))


def hermes_messages(messages: Sequence[Message], tools: Sequence[Message],
                    raw_text: RawText | None = None) -> list[dict[str, Any]]:
    """Plain role/content messages (Hermes text) for a template that knows nothing of tools;
    an assistant message for which ``raw_text`` gives the model's own text shows that text."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role", "user")
        raw = raw_text(m) if raw_text is not None and role == "assistant" else None
        if raw is not None:
            out.append({"role": role, "content": raw})
            continue
        content = text_content(m.get("content"))
        if role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        for call in m.get("tool_calls") or ():
            f = call.get("function", {})
            args = f.get("arguments") or "{}"
            args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            content += (f'<tool_call>\n{{"name": {json.dumps(f.get("name"))}, '
                        f'"arguments": {args}}}\n</tool_call>')
        out.append({"role": role, "content": content})
    if tools:
        if out and out[0]["role"] == "system":
            out[0]["content"] += "\n\n" + tools_prompt(tools)
        else:
            out.insert(0, {"role": "system", "content": tools_prompt(tools)})
    return out


def native_messages(messages: Sequence[Message], raw_text: RawText | None = None
                    ) -> list[dict[str, Any]]:
    """Messages for a tool-aware HF template: text content, tool-call arguments as dicts; an
    assistant message for which ``raw_text`` gives the model's own text is that text as its
    content, without ``tool_calls`` (the text holds them, as the model wrote them)."""
    out = []
    for m in messages:
        raw = raw_text(m) if raw_text is not None and m.get("role") == "assistant" else None
        if raw is not None:
            out.append({**{k: v for k, v in m.items() if k != "tool_calls"}, "content": raw})
            continue
        msg = {**m, "content": None if m.get("content") is None else text_content(m["content"])}
        calls = []
        for call in m.get("tool_calls") or ():
            f = dict(call.get("function", {}))
            with contextlib.suppress(TypeError, ValueError):
                f["arguments"] = json.loads(f.get("arguments") or "{}")
            calls.append({**call, "function": f})
        if calls:
            msg["tool_calls"] = calls
        out.append(msg)
    return out


def tool_rendering(render: Render) -> Literal["native", "system"] | None:
    """How a chat template can show tools: "native" (it renders ``tools``), "system" (it shows
    a system message, so :func:`hermes_messages` can carry them) or None (neither: a model
    with this template never sees its tools). ``render(messages, tools=None)`` renders a prompt;
    a template that raises on a probe counts as not showing it."""
    probe = [{"role": "user", "content": "x"}]
    name = PROBE_TOOLS[0]["function"]["name"]
    with contextlib.suppress(Exception):
        if name in render(native_messages(probe), tools=PROBE_TOOLS):
            return "native"
    with contextlib.suppress(Exception):
        if name in render(hermes_messages(probe, PROBE_TOOLS), tools=None):
            return "system"
    return None


def template_tool_format(template: Any, rendering: str | None) -> str:
    """The ``tool_format`` that ``"auto"`` picks for a model with this chat template (a string,
    or a tokenizer's dict of named templates) shown tools as ``rendering`` says: Hermes where
    the tools go in a system message (:func:`hermes_messages` asks for ``<tool_call>`` JSON),
    else the format the template itself asks for
    (:func:`~conveyor_integrations.parsing.detect.format_from_template`, which raises
    ``UnknownToolFormat`` when it cannot tell).

    >>> template_tool_format("{{ messages }}", "system")
    'hermes'
    >>> template_tool_format({"default": "[TOOL_CALLS] {{ tools }}"}, "native")
    'mistral'
    """
    if rendering != "native":
        return "hermes"
    from ..parsing.detect import format_from_template

    if isinstance(template, Mapping):
        template = "\n".join(str(t) for t in template.values())
    return format_from_template(str(template or ""))
