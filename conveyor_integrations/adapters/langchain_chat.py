"""``ChatConveyor``: a LangChain chat model over any backend of ours, with partial execution.

It always streams from the backend, also under ``invoke``/``ainvoke`` (which is what agents such
as ``create_agent`` call), so decorated tools start while the message is still being decoded.
The final ``AIMessage`` is built once from the parser's events, not by adding chunks with ``+``
(langchain-core re-parses partial arguments at every ``+``, which is quadratic). Example::

    from conveyor_integrations.backends import Replay
    model = ChatConveyor(backend=Replay('<tool_call>{"name": "search", "arguments": '
                                        '{"query": "x"}}</tool_call>'))
    msg = model.bind_tools([search]).invoke("find x")
    msg.tool_calls[0]["args"]                       # {'query': 'x'}
    msg.response_metadata["conveyor"]["calls"]      # per-call timings
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, model_validator

from ..backends.base import ChatRequest
from ..events import CallDone, CallStarted, Event, Text
from ..parsing import get_parser
from ..scheduler import Scheduler, default_scheduler
from ..turn import TurnCollector, TurnResult, stream_turn
from .bridge import Abandon, iterate_async, iterate_sync

__all__ = ["ChatConveyor"]

_SAMPLING = ("temperature", "top_p", "max_tokens", "seed", "stop")


class ChatConveyor(BaseChatModel):
    """A drop-in LangChain chat model whose decorated tools start while it decodes.

    ``backend`` is a ``Replay``, ``VLLMEngine`` or ``OpenAICompatible``; ``tool_format`` picks the
    parser (None: the backend's default); other keywords are sampling parameters passed through.
    ``approval_required`` names tools that a human approves (HITL): they never start early.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    backend: Any
    """The token source (a ``conveyor_integrations.backends`` object)."""
    tool_format: str | None = None
    scheduler: Any = Field(default=None, exclude=True)
    approval_required: list[str] = Field(default_factory=list)
    model_name: str = Field(default="conveyor", alias="model")
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other sampling parameters for the backend."""

    @model_validator(mode="before")
    @classmethod
    def _collect_sampling(cls, values: Any) -> Any:
        if isinstance(values, dict):
            known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
            extra = {k: values.pop(k) for k in list(values) if k not in known}
            if extra:
                values["model_kwargs"] = {**values.get("model_kwargs", {}), **extra}
        return values

    @property
    def _llm_type(self) -> str:
        return "conveyor"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "tool_format": self._format(),
                **self._sampling(None)}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "conveyor"
        params["ls_model_name"] = kwargs.get("model", self.model_name)
        return params

    @property
    def sched(self) -> Scheduler:
        """The scheduler whose registered tools start early."""
        return self.scheduler if self.scheduler is not None else default_scheduler()

    def _format(self) -> str:
        return str(self.tool_format or getattr(self.backend, "default_tool_format", "hermes"))

    def _sampling(self, stop: list[str] | None) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in _SAMPLING if getattr(self, k) is not None}
        if stop:
            out["stop"] = stop
        return {**out, **self.model_kwargs}

    # -- tools ---------------------------------------------------------------------------------
    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | dict[str, Any] | bool | None
                   = None, strict: bool | None = None, **kwargs: Any) -> Any:
        """Bind tools and an optional ``tool_choice`` ("auto", "required", "none", "any", a tool
        name, or True meaning the single tool). ``strict=True`` marks the schemas strict (vLLM's
        server constrains a forced call's arguments only for strict tools)."""
        schemas = [convert_to_openai_tool(t, strict=strict) for t in tools]
        names = [s["function"]["name"] for s in schemas]
        if tool_choice is True:
            tool_choice = names[0] if len(names) == 1 else "required"
        if tool_choice == "any":
            tool_choice = "required"
        if isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "required"):
            if tool_choice not in names:
                raise ValueError(f"tool_choice {tool_choice!r} is not a bound tool: {names}")
            tool_choice = {"type": "function", "function": {"name": tool_choice}}
        bound: dict[str, Any] = {"tools": schemas, **kwargs}
        if tool_choice not in (None, False):
            bound["tool_choice"] = tool_choice
        return self.bind(**bound)

    # -- one turn ------------------------------------------------------------------------------
    def _request(self, messages: list[BaseMessage], stop: list[str] | None,
                 kwargs: dict[str, Any]) -> ChatRequest:
        sampling = self._sampling(stop)
        sampling.update({k: v for k, v in kwargs.items()
                         if k not in ("tools", "tool_choice", "stream")})
        return ChatRequest(messages=convert_to_openai_messages(messages),
                           tools=list(kwargs.get("tools") or ()),
                           tool_choice=kwargs.get("tool_choice"), sampling=sampling)

    def _turn(self, request: ChatRequest, sink: Callable[[TurnResult], None]
              ) -> tuple[Callable[[], AsyncIterator[ChatGenerationChunk]], Abandon]:
        """The turn's chunk generator (for the bridge) and what to call if its consumer leaves."""
        names = [t["function"]["name"] for t in request.tools]
        sched = self.sched
        parser = get_parser(self._format(), tools=names or None,
                            streams=sched.parser_streams(names))
        session = sched.session(request.request_id, tools=names or None,
                                approval_required=self.approval_required)

        async def chunks() -> AsyncIterator[ChatGenerationChunk]:
            collector = TurnCollector(session)
            async for delta, events in stream_turn(self.backend, request, parser=parser,
                                                   session=session):
                collector.add(delta, events)
                chunk = _chunk(events)
                if chunk is not None:
                    yield chunk
            sink(collector.result())
            yield ChatGenerationChunk(message=_final_chunk(collector.result(), self._format(),
                                                                  self.model_name))

        return chunks, Abandon(session)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                ) -> Iterator[ChatGenerationChunk]:
        box: list[TurnResult] = []
        make, abandon = self._turn(self._request(messages, stop, kwargs), box.append)
        for chunk in iterate_sync(self.sched, make, abandon):
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            abandon.delivered = bool(box)     # the final chunk comes after the turn's result
            yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        box: list[TurnResult] = []
        make, abandon = self._turn(self._request(messages, stop, kwargs), box.append)
        async for chunk in iterate_async(self.sched, make, abandon):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            abandon.delivered = bool(box)
            yield chunk

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                  ) -> ChatResult:
        box: list[TurnResult] = []
        for chunk in iterate_sync(self.sched, *self._turn(self._request(messages, stop, kwargs),
                                                          box.append)):
            if run_manager and chunk.text:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        return ChatResult(generations=[ChatGeneration(
            message=_message(box[0], self._format(), self.model_name))])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                         ) -> ChatResult:
        box: list[TurnResult] = []
        async for chunk in iterate_async(self.sched, *self._turn(
                self._request(messages, stop, kwargs), box.append)):
            if run_manager and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        return ChatResult(generations=[ChatGeneration(
            message=_message(box[0], self._format(), self.model_name))])


def _chunk(events: list[Event]) -> ChatGenerationChunk | None:
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


def _message(result: TurnResult, tool_format: str, self_name: str) -> AIMessage:
    return AIMessage(
        content=result.text, tool_calls=_tool_calls(result),
        invalid_tool_calls=[invalid_tool_call(name=m.name, args=None, id=m.id, error=m.reason)
                            for m in result.malformed],
        usage_metadata=_usage(result),
        response_metadata={"finish_reason": result.finish_reason, "model_provider": "conveyor",
                           "model_name": self_name,
                           "conveyor": result.metadata(tool_format)})


def _final_chunk(result: TurnResult, tool_format: str, self_name: str) -> AIMessageChunk:
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
