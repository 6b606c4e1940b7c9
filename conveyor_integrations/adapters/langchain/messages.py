"""The LangChain messages of a turn: the streamed chunks, and the final ``AIMessage``.

Built once from the parser's events, not by adding chunks with ``+`` (langchain-core re-parses
partial arguments at every ``+``, which is quadratic). The timings under
``response_metadata["conveyor"]`` are a snapshot taken when decoding ended: a tool still
running then shows ``status: "running"`` and ``saved_s: None``; its final figures are on its
``ToolMessage`` (``response_metadata["conveyor"]``) once the agent ran it.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk

from ...events import CallDone, CallStarted, Event, Text
from ...turn import TurnResult

__all__ = ["final_chunk", "message", "stream_chunk"]


def stream_chunk(events: list[Event]) -> ChatGenerationChunk | None:
    """The chunk for one delta's events: its text, and tool-call chunks at call start/end."""
    text: list[str] = []
    calls: dict[int, Any] = {}
    for ev in events:
        if isinstance(ev, Text):
            text.append(ev.text)
        elif isinstance(ev, CallStarted):
            calls[ev.index] = tool_call_chunk(name=ev.name, args="", id=ev.id, index=ev.index)
        elif isinstance(ev, CallDone):
            args = json.dumps(ev.args)
            if ev.index in calls:
                calls[ev.index]["args"] = args
            else:
                calls[ev.index] = tool_call_chunk(name=None, args=args, id=None, index=ev.index)
    if not text and not calls:
        return None
    return ChatGenerationChunk(message=AIMessageChunk(content="".join(text),
                                                      tool_call_chunks=list(calls.values())))


def _usage(result: TurnResult) -> dict[str, int]:
    inp, out = result.token_counts()
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}


def _tool_calls(result: TurnResult) -> list[Any]:
    calls = [tool_call(name=c.name, args=c.args, id=c.id) for c in result.calls]
    if result.aborted_call is not None:
        a = result.aborted_call
        calls.append(tool_call(name=a.name, args=a.args, id=a.id))
    return calls


def message(result: TurnResult, tool_format: str, self_name: str) -> AIMessage:
    return AIMessage(
        content=result.text, tool_calls=_tool_calls(result),
        invalid_tool_calls=[invalid_tool_call(name=m.name, args=None, id=m.id, error=m.reason)
                            for m in result.malformed],
        usage_metadata=_usage(result),
        response_metadata={"finish_reason": result.finish_reason, "model_provider": "conveyor",
                           "model_name": self_name,
                           "conveyor": result.metadata(tool_format)})


def final_chunk(result: TurnResult, tool_format: str, self_name: str) -> AIMessageChunk:
    """The last streamed chunk: usage and metadata (and an aborted call's partial arguments)."""
    extra = []
    if result.aborted_call is not None and not result.aborted_call_complete:
        a = result.aborted_call
        extra.append(tool_call_chunk(name=None, args=json.dumps(a.args), id=None, index=a.index))
    return AIMessageChunk(
        content="", tool_call_chunks=extra, chunk_position="last",
        usage_metadata=_usage(result),  # type: ignore[arg-type]
        response_metadata={"finish_reason": result.finish_reason, "model_provider": "conveyor",
                           "model_name": self_name,
                           "conveyor": result.metadata(tool_format)})
