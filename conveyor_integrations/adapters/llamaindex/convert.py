"""Shapes for ``ConveyorLLM``: LlamaIndex messages in, LlamaIndex chat responses out.

* :func:`to_openai_messages`: LlamaIndex ``ChatMessage``s -> the OpenAI-style dicts our backends take
  (assistant tool calls from ``additional_kwargs["tool_calls"]`` or ``ToolCallBlock``s, tool
  results with their ``tool_call_id``);
* :class:`ResponseBuilder`: a turn's parser events -> streamed ``ChatResponse``s, and the final one
  built once from the :class:`~conveyor_integrations.turn.TurnResult`;
* :func:`tool_selections`: a response's tool calls as LlamaIndex ``ToolSelection``s;
* :class:`ConveyorTurnEndEvent`: the instrumentation event fired at the end of every turn.

Tool calls are stored as LlamaIndex's OpenAI integration stores them: OpenAI-shaped entries in
``message.additional_kwargs["tool_calls"]`` (plain dicts here) plus one ``ToolCallBlock`` each.
Example::

    >>> from llama_index.core.llms import ChatMessage
    >>> to_openai_messages([ChatMessage(role="user", content="hi")])
    [{'role': 'user', 'content': 'hi'}]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.llms.llm import ToolSelection

from ...events import CallDone, Event, Text
from ...turn import TurnResult

__all__ = ["ConveyorTurnEndEvent", "ResponseBuilder", "conveyor_metadata", "to_openai_messages",
           "tool_selections"]

_ROLES = {"chatbot": "assistant", "model": "assistant", "function": "tool",
          "developer": "system"}


class ConveyorTurnEndEvent(BaseEvent):
    """Fired (through ``get_dispatcher``) when a ``ConveyorLLM`` turn ends.

    Carries the same figures as ``ChatResponse.additional_kwargs["conveyor"]``: per-call timings
    in seconds since the request began (``seen``, ``args_final``, ``tool_start``, ``tool_end``,
    ``decode_end``, ``early``, ``status``, ``saved_s``) and the early abort, if any.
    """

    request_id: str
    tool_format: str
    decode_s: float
    calls: list[dict[str, Any]]
    saved_s: float
    abort: dict[str, Any] | None = None

    @classmethod
    def class_name(cls) -> str:
        return "ConveyorTurnEndEvent"


def conveyor_metadata(result: TurnResult, tool_format: str) -> dict[str, Any]:
    """Per-call timings and the early abort of a turn (as ``ChatConveyor`` reports them)."""
    return result.metadata(tool_format)


# -- messages in -------------------------------------------------------------------------------
def _call_dict(call: Any) -> dict[str, Any]:
    if hasattr(call, "model_dump"):
        call = call.model_dump()
    if "tool_name" in call:  # a dumped ToolCallBlock
        name, args, cid = call["tool_name"], call.get("tool_kwargs") or {}, call.get("tool_call_id")
    else:
        fn = call.get("function") or {}
        name, args, cid = fn.get("name"), fn.get("arguments") or "{}", call.get("id")
    return {"id": cid, "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str)
                         else json.dumps(args, ensure_ascii=False)}}


def to_openai_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex chat messages as OpenAI-style message dicts (text content only)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.role.value if isinstance(m.role, MessageRole) else str(m.role)
        role = _ROLES.get(role, role)
        msg: dict[str, Any] = {"role": role, "content": m.content or ""}
        extra = m.additional_kwargs
        calls = extra.get("tool_calls") or [b for b in m.blocks if isinstance(b, ToolCallBlock)]
        if calls and role == "assistant":
            msg["tool_calls"] = [_call_dict(c) for c in calls]
        if role == "tool":
            msg["tool_call_id"] = extra.get("tool_call_id")
            if extra.get("name"):
                msg["name"] = extra["name"]
        out.append(msg)
    return out


# -- responses out -----------------------------------------------------------------------------
def _message(content: str, calls: Iterable[CallDone]) -> ChatMessage:
    ordered = sorted(calls, key=lambda c: c.index)
    blocks: list[Any] = [TextBlock(text=content)]
    blocks += [ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=dict(c.args))
               for c in ordered]
    extra: dict[str, Any] = {}
    if ordered:
        extra["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": json.dumps(c.args, ensure_ascii=False)}}
            for c in ordered]
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=extra)


class ResponseBuilder:
    """Builds the ``ChatResponse``s of one turn: one per delta with text or a completed call
    (carrying the message so far, as LlamaIndex streams do), then the final one."""

    def __init__(self, tool_format: str) -> None:
        self.tool_format = tool_format
        self._text: list[str] = []
        self._calls: list[CallDone] = []

    def chunk(self, events: Sequence[Event]) -> ChatResponse | None:
        """The streamed response for one delta's events, or None when nothing shows yet."""
        delta = "".join(ev.text for ev in events if isinstance(ev, Text))
        done = [ev for ev in events if isinstance(ev, CallDone)]
        if not delta and not done:
            return None
        if delta:
            self._text.append(delta)
        self._calls.extend(done)
        return ChatResponse(message=_message("".join(self._text), self._calls), delta=delta)

    def final(self, result: TurnResult, *, delta: str | None = None) -> ChatResponse:
        """The whole turn's response: text, tool calls (an aborted call included, with the
        arguments decoded so far), usage, and ``additional_kwargs["conveyor"]``."""
        calls = list(result.calls)
        if result.aborted_call is not None:
            calls.append(result.aborted_call)
        meta = conveyor_metadata(result, self.tool_format)
        prompt, completion = result.token_counts()
        usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                 "total_tokens": prompt + completion}
        raw = {"finish_reason": result.finish_reason, "usage": usage, "conveyor": meta,
               "malformed": [{"id": m.id, "name": m.name, "reason": m.reason}
                             for m in result.malformed]}
        return ChatResponse(message=_message(result.text, calls), delta=delta, raw=raw,
                            additional_kwargs={**usage, "conveyor": meta})


def _selection(call: Any) -> ToolSelection:
    c = _call_dict(call)
    args: Any = c["function"]["arguments"]
    try:
        args = json.loads(args) if args else {}
    except ValueError:
        args = {}
    return ToolSelection(tool_id=c["id"] or "", tool_name=c["function"]["name"] or "",
                         tool_kwargs=args if isinstance(args, dict) else {})


def tool_selections(response: ChatResponse) -> list[ToolSelection]:
    """The tool calls of ``response`` (from ``additional_kwargs`` or ``ToolCallBlock``s)."""
    message = response.message
    calls = message.additional_kwargs.get("tool_calls") or [
        b for b in message.blocks if isinstance(b, ToolCallBlock)]
    return [_selection(c) for c in calls]
