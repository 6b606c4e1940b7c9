"""How :class:`~conveyor_integrations.backends.vllm_engine.VLLMEngine` shows tools to a model.

A model whose chat template renders ``tools`` (Qwen2.5, Hermes, Llama 3.1...) gets them that way
(:func:`native_messages`). A template without a tool section (SmolLM2's, the bundled model's) gets
Hermes text instead (:func:`hermes_messages`): the tool schemas in a system message
(:func:`tools_prompt`), earlier calls as ``<tool_call>`` text and results as
``<tool_response>`` user turns. :func:`tool_rendering` tells which of the two a template takes,
or that it shows tools neither way (the engine then warns once). :func:`forced_tool_call_tag`
is the grammar that forces a call for ``tool_choice="required"`` or a named tool, and
:func:`sampling_params` a request's vLLM ``SamplingParams`` (with that grammar).

**Earlier turns, as the model wrote them** (:class:`TurnMemo`). Rebuilt from the structured
message, an assistant turn differs from what the model decoded: the parser moves the newline
between two ``<tool_call>`` blocks into the text, the arguments come back re-serialised
(LangChain: ``json.dumps`` spacing and ``\\u00fc`` escapes), and re-encoding the text rarely
gives the model's own token ids (a forced or sampled turn often spells ``" three"`` as
``" ", "th", "re", "e"``). Either way the next prompt leaves (previous prompt + generated
tokens) inside the first assistant turn, and vLLM's prefix cache stops there. So the engine
remembers each finished turn's text and token ids, keyed by what the turn *says*
(:func:`raw_key`: the text outside the ``<tool_call>`` blocks, and each call's name and
arguments); an assistant message that says exactly that (:func:`message_key`) is rendered as
the model's text (``hermes_messages``/``native_messages`` take a ``raw_text`` lookup) and its
tokens are spliced in (:meth:`TurnMemo.prompt_ids`). A message whose text or calls were edited
no longer matches and is rendered from its structured fields. Nothing travels in the messages
(LangChain's ``convert_to_openai_messages`` keeps only role, content, name, tool_calls and
tool_call_id; LlamaIndex's OpenAI integration sends ``additional_kwargs`` over the wire): the
tokens exist only in the engine, and they are only worth anything where its prefix cache is.
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
import re
import secrets
from array import array
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .base import ChatRequest

__all__ = [
    "PROBE_TOOLS",
    "TurnMemo",
    "forced_tool_call_tag",
    "hermes_messages",
    "message_key",
    "native_messages",
    "raw_key",
    "sampling_params",
    "text_content",
    "tool_rendering",
    "tools_prompt",
]

Message = Mapping[str, Any]
Render = Callable[..., str]
"""``render(messages, tools=None) -> prompt text`` (a tokenizer's ``apply_chat_template``)."""
RawText = Callable[[Message], str | None]
"""An assistant message -> the model's own text for it (None: render the message's fields)."""
TurnKey = tuple[str, tuple[tuple[str, str], ...]]
"""What an assistant turn says: its text, and each call's name and canonical JSON arguments."""
_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)

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


def sampling_params(request: ChatRequest) -> Any:
    """vLLM ``SamplingParams`` for a request: its ``sampling`` keys, deltas out, ``max_tokens``
    up to the context length unless given, and the forcing grammar when ``tool_choice`` forces a
    call (``structured_outputs`` may be a dict: ``json``/``regex``/``choice``...)."""
    from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

    kw = {k: v for k, v in request.sampling.items() if v is not None}
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


def _canonical(args: Any) -> str | None:
    with contextlib.suppress(TypeError, ValueError):
        if isinstance(args, str):
            args = json.loads(args or "{}")
        if isinstance(args, dict):
            return json.dumps(args, ensure_ascii=False, sort_keys=True)
    return None


def message_key(message: Message) -> TurnKey | None:
    """What an assistant message says (text content; calls' names and arguments, whitespace and
    key order aside); None when a call's arguments are not a JSON object."""
    calls = []
    for call in message.get("tool_calls") or ():
        f = call.get("function") or {}
        args = _canonical(f.get("arguments") or "{}")
        if args is None or not isinstance(f.get("name"), str):
            return None
        calls.append((f["name"], args))
    return text_content(message.get("content")), tuple(calls)


def raw_key(raw: str) -> TurnKey | None:
    """What a model's Hermes text says, read as the ``hermes`` parser reads it: the text outside
    the ``<tool_call>`` blocks, and each block's name and arguments; None when a block is not a
    complete call (a truncated or malformed one: the parser's message then says something else).

    >>> raw_key('Sure.\\n<tool_call>\\n{"name": "f", "arguments": {"b": 1, "a": "ü"}}\\n</tool_call>')
    ('Sure.\\n', (('f', '{"a": "ü", "b": 1}'),))
    """
    calls = []
    for body in _CALL_BLOCK.findall(raw):
        try:
            call = json.loads(body)
        except ValueError:
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return None
        args = call.get("arguments", call.get("parameters", {}))
        canonical = _canonical(args) if isinstance(args, dict) else None
        if canonical is None:
            return None
        calls.append((call["name"], canonical))
    text = _CALL_BLOCK.sub("", raw)
    if "<tool_call>" in text or "</tool_call>" in text:
        return None
    return text, tuple(calls)


class TurnMemo:
    """The text and token ids of the turns an engine decoded, found again by what they say.

    ``add(text, ids)`` after a turn (``ids=None``: the ids are unknown, keep the text);
    :meth:`prompt_ids` renders a conversation with each remembered assistant turn as the
    model's text and its ids spliced in. Least recently used turns go first once the ids and
    texts kept pass ``max_size`` (tokens plus characters). Not thread-safe: the engine uses it
    from its own loop only.

    >>> memo = TurnMemo()
    >>> memo.add('<tool_call>{"name":"f","arguments":{}}</tool_call>', [7, 8])
    >>> msg = {"role": "assistant", "content": "",
    ...        "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}
    >>> memo.get(msg)
    ('<tool_call>{"name":"f","arguments":{}}</tool_call>', [7, 8])
    """

    def __init__(self, max_size: int = 1 << 22) -> None:
        self.max_size = max_size
        self._turns: OrderedDict[TurnKey, tuple[str, array[int] | None]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._turns)

    def add(self, text: str, ids: Sequence[int] | None) -> None:
        """Remember a finished turn's ``text`` and the ``ids`` that spell it exactly."""
        key = raw_key(text)
        if key is None or (ids is None and not key[1]):  # nothing a rebuilt message would lose
            return
        old = self._turns.pop(key, None)
        if old is not None:
            self._size -= len(old[0]) + len(old[1] or ())
        self._turns[key] = (text, None if ids is None else array("i", ids))
        self._size += len(text) + len(ids or ())
        while self._size > self.max_size and len(self._turns) > 1:
            _, (t, i) = self._turns.popitem(last=False)
            self._size -= len(t) + len(i or ())

    def get(self, message: Message) -> tuple[str, list[int] | None] | None:
        """The remembered ``(text, ids)`` of the turn that says what ``message`` says."""
        key = message_key(message) if message.get("role") == "assistant" else None
        if key is None or key not in self._turns:
            return None
        self._turns.move_to_end(key)
        text, ids = self._turns[key]
        return text, None if ids is None else ids.tolist()

    def prompt_ids(self, messages: Sequence[Message], render: Callable[[RawText], str],
                   encode: Callable[[str], list[int]]) -> list[int]:
        """The prompt of ``messages``: ``render(raw_text)`` (the chat template over the messages
        as ``hermes_messages``/``native_messages`` build them with ``raw_text``) encoded, with
        the remembered turns' own ids in place of their text.

        The turns are found in a second rendering where each one's text is a unique marker;
        where the template changes the text around a marker (so that putting the texts back
        does not give the first rendering) the whole text is encoded as it is."""
        hits = {id(m): hit for m in messages if (hit := self.get(m)) is not None}
        text = render(lambda m: hits[id(m)][0] if id(m) in hits else None)
        spliced = {k: ids for k, (_, ids) in hits.items() if ids is not None}
        if not spliced:
            return encode(text)
        tag = secrets.token_hex(8)
        marks = {k: f"\x00turn{n}-{tag}\x00" for n, k in enumerate(spliced)}
        marked = render(lambda m: marks.get(id(m)) or (hits[id(m)][0] if id(m) in hits else None))
        by_mark = {marks[k]: (hits[k][0], ids) for k, ids in spliced.items()}
        ids: list[int] = []
        rebuilt: list[str] = []
        seen = 0
        for part in re.split("(\x00turn\\d+-" + tag + "\x00)", marked):
            turn = by_mark.get(part)
            if turn is None:
                ids += encode(part) if part else []
                rebuilt.append(part)
            else:
                seen += 1
                ids += turn[1]
                rebuilt.append(turn[0])
        if seen != len(by_mark) or "".join(rebuilt) != text:
            return encode(text)
        return ids
