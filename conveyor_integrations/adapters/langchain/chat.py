"""``ChatConveyor``: a LangChain chat model over any backend of ours, with partial execution.

It always streams from the backend, also under ``invoke``/``ainvoke`` (which is what agents such
as ``create_agent`` call), so the decorated tools bound with ``bind_tools`` start while the
message is still being decoded. Under ``ainvoke``/``astream`` the turn runs on the caller's loop
(async tools start there); under ``invoke``/``stream`` on the scheduler's. The messages are built
in :mod:`.messages`. Example::

    from conveyor_integrations.backends import Replay
    model = ChatConveyor(backend=Replay('<tool_call>{"name": "search", "arguments": '
                                        '{"query": "x"}}</tool_call>'))
    msg = model.bind_tools([search]).invoke("find x")
    msg.tool_calls[0]["args"]                       # {'query': 'x'}
    msg.response_metadata["conveyor"]["calls"]      # per-call timings

While it decodes, the run's callback handlers get the custom events ``conveyor_tool_started``
and ``conveyor_tool_result`` of its early executions (``astream_events(version="v2")`` shows
them; see :mod:`.custom_events`). ``with_structured_output(schema, method=...)`` takes
"function_calling", "json_mode" and "json_schema" (see :mod:`.structured`).
``batch``/``abatch`` over a ``Replay`` reserve its next transcripts for their inputs, so the answers follow the inputs (see ``Replay.reserve``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Literal
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_config_list
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.uuid import uuid7
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ...backends.base import ChatRequest, new_request_id
from ...policy import BoundTools
from ...scheduler import Scheduler
from ..common import ModelTurn, check_tool_format, drive_async, drive_sync, resolve_scheduler
from .custom_events import adispatch, dispatch, relay, watch
from .messages import final_chunk, message, stream_chunk
from .structured import structured_output

__all__ = ["ChatConveyor"]

_SAMPLING = ("temperature", "top_p", "max_tokens", "seed", "stop")
_NOT_SAMPLING = ("tools", "tool_choice", "stream", "conveyor_tools")


class ChatConveyor(BaseChatModel):
    """A drop-in LangChain chat model whose decorated tools start while it decodes.

    ``backend`` is a ``Replay``, ``VLLMEngine`` or ``OpenAICompatible``; ``tool_format`` picks the
    parser ("auto", the default: chosen from the backend, for ``VLLMEngine`` from the model's chat
    template; see :mod:`conveyor_integrations.parsing.detect`); other keywords are sampling
    parameters passed through.
    ``approval_required`` names tools that a human approves (HITL): they never start early.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    backend: Any
    """The token source (a ``conveyor_integrations.backends`` object)."""
    tool_format: str | None = "auto"
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
    _planned: dict[UUID, str] = PrivateAttr(default_factory=dict)
    """A batch's run ids -> the request ids their Replay transcripts are reserved for."""

    @model_validator(mode="before")
    @classmethod
    def _collect_sampling(cls, values: Any) -> Any:
        if isinstance(values, dict):
            check_tool_format(values.get("tool_format"))
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
        """The scheduler that runs the early executions (the process-wide one by default)."""
        return resolve_scheduler(self.scheduler)

    def _format(self) -> str:
        return str(self.tool_format or "auto")

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
        server constrains a forced call's arguments only for strict tools). The decorated tool
        objects among ``tools`` are the only ones that may start early."""
        bound_tools = BoundTools(tools)
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
        bound: dict[str, Any] = {"tools": schemas, "conveyor_tools": bound_tools, **kwargs}
        if tool_choice not in (None, False):
            bound["tool_choice"] = tool_choice
        return self.bind(**bound)

    def with_structured_output(
        self, schema: Mapping[str, Any] | type | None = None, *,
        method: Literal["function_calling", "json_mode", "json_schema"] = "function_calling",
        include_raw: bool = False, strict: bool | None = None, **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """The model answering as ``schema`` (a pydantic class, a TypedDict, a JSON schema).

        ``method``: "function_calling" (a forced call of the schema as the one tool),
        "json_mode" or "json_schema" (a JSON text answer, constrained by ``VLLMEngine`` and
        ``OpenAICompatible``); see :mod:`conveyor_integrations.adapters.langchain.structured`.
        ``include_raw=True`` answers ``{"raw", "parsed", "parsing_error"}``; else an answer
        that does not parse raises ``OutputParserException``. ``strict`` marks the schema
        strict (not with "json_mode"); other keywords are bound (sampling parameters)."""
        return structured_output(self, schema, method=method, include_raw=include_raw,
                                 strict=strict, kwargs=kwargs)

    # -- batches -------------------------------------------------------------------------------
    def _plan(self, n: int, config: RunnableConfig | list[RunnableConfig] | None
              ) -> tuple[RunnableConfig | list[RunnableConfig] | None, list[UUID]]:
        """Over a Replay: a run id per input, and the next transcripts reserved for the
        inputs' requests in input order (their streams start in any order)."""
        reserve = getattr(self.backend, "reserve", None)    # a Replay's: see Replay.reserve
        if n < 2 or reserve is None:
            return config, []
        configs = get_config_list(config, n)
        run_ids = [c.get("run_id") or uuid7() for c in configs]
        if len(set(run_ids)) < n:
            return config, []
        for c, run_id in zip(configs, run_ids, strict=True):
            c["run_id"] = run_id
        request_ids = [new_request_id() for _ in run_ids]
        self._planned.update(zip(run_ids, request_ids, strict=True))
        reserve(request_ids)
        return configs, run_ids

    def batch(self, inputs: list[LanguageModelInput],
              config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any | None) -> list[AIMessage]:
        """``Runnable.batch``; over a Replay the answers follow the inputs' order."""
        configs, planned = self._plan(len(inputs), config)
        try:
            return super().batch(inputs, configs, return_exceptions=return_exceptions, **kwargs)
        finally:
            for run_id in planned:
                self._planned.pop(run_id, None)

    async def abatch(self, inputs: list[LanguageModelInput],
                     config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any | None) -> list[AIMessage]:
        """``Runnable.abatch``; over a Replay the answers follow the inputs' order."""
        configs, planned = self._plan(len(inputs), config)
        try:
            return await super().abatch(inputs, configs, return_exceptions=return_exceptions,
                                        **kwargs)
        finally:
            for run_id in planned:
                self._planned.pop(run_id, None)

    # -- one turn ------------------------------------------------------------------------------
    def _turn(self, messages: list[BaseMessage], stop: list[str] | None,
              kwargs: dict[str, Any],
              run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None, *,
              is_async: bool) -> tuple[ModelTurn, Any]:
        """The turn, and where its custom events go (see ``custom_events.relay``)."""
        sampling = self._sampling(stop)
        sampling.update({k: v for k, v in kwargs.items() if k not in _NOT_SAMPLING})
        planned = self._planned.pop(run_manager.run_id, None) if run_manager else None
        request = ChatRequest(messages=convert_to_openai_messages(messages),
                              tools=list(kwargs.get("tools") or ()),
                              tool_choice=kwargs.get("tool_choice"), sampling=sampling,
                              request_id=planned or new_request_id())
        tools, events_to = kwargs.get("conveyor_tools"), relay(run_manager, is_async=is_async)
        return ModelTurn(self.sched, self.backend, request, tool_format=self._format(),
                         tools=tools if isinstance(tools, BoundTools) else BoundTools(),
                         approval_required=self.approval_required, model=self.model_name,
                         tool_events=watch(events_to)), events_to

    async def _chunks(self, turn: ModelTurn) -> AsyncIterator[ChatGenerationChunk | None]:
        """The one flow both drivers run: a chunk per delta with content, then the final one;
        None for a delta without content after which custom events wait to be dispatched."""
        watching = turn.tool_events
        async for delta, events in turn.events():
            chunk = stream_chunk(events)
            if chunk is not None:
                yield chunk
            elif watching is not None and watching.pending():
                yield None
        assert turn.result is not None
        last = turn.final = ChatGenerationChunk(message=final_chunk(
            turn.result, turn.tool_format, self.model_name))
        yield last              # the chunk that carries the turn: once received, its tools run

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                ) -> Iterator[ChatGenerationChunk]:
        turn, events_to = self._turn(messages, stop, kwargs, run_manager, is_async=False)
        watching = turn.tool_events
        for chunk in drive_sync(self.sched, lambda: self._chunks(turn), turn.abandon,
                                turn.seen):
            if watching is not None:
                dispatch(events_to, watching.drain())
            if chunk is None:
                continue
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
        if watching is not None:
            dispatch(events_to, watching.end())

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        turn, events_to = self._turn(messages, stop, kwargs, run_manager, is_async=True)
        watching = turn.tool_events
        async for chunk in drive_async(lambda: self._chunks(turn), turn.abandon,
                                       turn.seen):
            if watching is not None:
                await adispatch(events_to, watching.drain())
            if chunk is None:
                continue
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
        if watching is not None:
            await adispatch(events_to, watching.end())

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                  ) -> ChatResult:
        turn, events_to = self._turn(messages, stop, kwargs, run_manager, is_async=False)
        watching = turn.tool_events
        for chunk in drive_sync(self.sched, lambda: self._chunks(turn), turn.abandon,
                                turn.seen):
            if watching is not None:
                dispatch(events_to, watching.drain())
            if run_manager and chunk is not None and chunk.text:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        if watching is not None:
            dispatch(events_to, watching.end())
        assert turn.result is not None
        return ChatResult(generations=[ChatGeneration(
            message=message(turn.result, turn.tool_format, self.model_name))])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                         ) -> ChatResult:
        turn, events_to = self._turn(messages, stop, kwargs, run_manager, is_async=True)
        watching = turn.tool_events
        async for chunk in drive_async(lambda: self._chunks(turn), turn.abandon,
                                       turn.seen):
            if watching is not None:
                await adispatch(events_to, watching.drain())
            if run_manager and chunk is not None and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        if watching is not None:
            await adispatch(events_to, watching.end())
        assert turn.result is not None
        return ChatResult(generations=[ChatGeneration(
            message=message(turn.result, turn.tool_format, self.model_name))])
