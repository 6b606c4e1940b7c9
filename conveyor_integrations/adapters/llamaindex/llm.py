"""``ConveyorLLM``: a LlamaIndex ``FunctionCallingLLM`` over any backend of ours.

It always streams from the backend under every entry point (``chat``, ``achat``,
``stream_chat``, ``astream_chat`` and the completion forms): the async ones on the caller's loop,
the sync ones on the scheduler's. The decorated tools the agent passes (``FunctionAgent(tools=
...)`` reaches ``chat_with_tools``) start while the message is still being decoded; an
``EarlyAbort`` stops decoding at once. The final
``ChatResponse`` is built once from the turn: tool calls in ``message.additional_kwargs
["tool_calls"]`` (as LlamaIndex's OpenAI integration stores them, plus ``ToolCallBlock``s), and
per-call timings and the abort in ``additional_kwargs["conveyor"]`` and ``raw["conveyor"]``; a
:class:`ConveyorTurnEndEvent` carries the same figures to instrumentation handlers, and
``ConveyorToolStartedEvent``/``ConveyorToolResultEvent`` tell them when each early tool starts
and when its result is ready (see :mod:`.instrumentation`). Example::

    from llama_index.core.agent.workflow import FunctionAgent
    from conveyor_integrations.adapters.llamaindex import ConveyorLLM
    from conveyor_integrations.backends import VLLMEngine

    agent = FunctionAgent(tools=[search], llm=ConveyorLLM(backend=VLLMEngine()))
    handler = agent.run("What is the weather in Paris?")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW, DEFAULT_NUM_OUTPUTS
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.tools.types import BaseTool

from ...backends.base import ChatRequest
from ...events import Event
from ...policy import BoundTools
from ...scheduler import Scheduler
from ...turn import TurnResult
from ..common import ModelTurn, check_tool_format, drive_async, drive_sync, resolve_scheduler
from .convert import ConveyorTurnEndEvent, ResponseBuilder, to_openai_messages, tool_selections
from .instrumentation import dispatch as dispatch_tool_events
from .instrumentation import watch
from .tools import release_calls

__all__ = ["ConveyorLLM"]

dispatcher = get_dispatcher(__name__)
_SAMPLING = ("temperature", "top_p", "max_tokens", "seed", "stop")
_NOT_SAMPLING = ("tools", "tool_choice", "stream", "formatted", "conveyor_tools")
_Item = tuple[list[Event], TurnResult | None]


class ConveyorLLM(FunctionCallingLLM):
    """A LlamaIndex function-calling LLM whose decorated tools start while it decodes.

    ``backend`` is a ``Replay``, ``VLLMEngine`` or ``OpenAICompatible``; ``tool_format`` picks the
    parser ("auto", the default: chosen from the backend, for ``VLLMEngine`` from the model's chat
    template); ``approval_required`` names tools that a human approves
    (they never start early); other keywords are sampling parameters passed to the backend.
    """

    backend: Any = Field(exclude=True, description="The token source (a conveyor backend).")
    tool_format: str | None = Field(default="auto", description="Tool-call wire format.")
    scheduler: Any = Field(default=None, exclude=True)
    approval_required: list[str] = Field(default_factory=list)
    model: str = Field(default="conveyor", description="The model name reported in metadata.")
    context_window: int | None = Field(default=None, description="None: the backend's, if known.")
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] | None = None
    sampling_kwargs: dict[str, Any] = Field(default_factory=dict,
                                            description="Other sampling parameters.")

    def __init__(self, backend: Any = None, tool_format: str | None = "auto",
                 **kwargs: Any) -> None:
        check_tool_format(tool_format)
        known = set(type(self).model_fields)
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in known}
        if extra:
            kwargs["sampling_kwargs"] = {**kwargs.get("sampling_kwargs", {}), **extra}
        super().__init__(backend=backend, tool_format=tool_format, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "ConveyorLLM"

    @property
    def metadata(self) -> LLMMetadata:
        """Chat, function calling, and the context window (given, or the engine's)."""
        window = self.context_window
        if window is None:
            engine_args = getattr(self.backend, "engine_args", None) or {}
            window = (getattr(self.backend, "max_model_len", None)
                      or engine_args.get("max_model_len") or DEFAULT_CONTEXT_WINDOW)
        return LLMMetadata(context_window=int(window),
                           num_output=self.max_tokens or DEFAULT_NUM_OUTPUTS,
                           is_chat_model=True, is_function_calling_model=True,
                           model_name=self.model)

    @property
    def sched(self) -> Scheduler:
        """The scheduler that runs the early executions (the process-wide one by default)."""
        return resolve_scheduler(self.scheduler)

    def _format(self) -> str:
        return str(self.tool_format or "auto")

    # -- tools ---------------------------------------------------------------------------------
    def _prepare_chat_with_tools(
        self, tools: Sequence[BaseTool], user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None, verbose: bool = False,
        allow_parallel_tool_calls: bool = False, tool_required: bool = False, **kwargs: Any,
    ) -> dict[str, Any]:
        """Messages, OpenAI tool schemas and ``tool_choice`` for ``chat``; the decorated tools
        among ``tools`` are the only ones that may start early."""
        bound = BoundTools(tools)
        schemas = [t.metadata.to_openai_tool(skip_length_check=True) for t in tools]
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg)
                            if isinstance(user_msg, str) else user_msg)
        choice = kwargs.pop("tool_choice", None)
        if isinstance(choice, str) and choice not in ("auto", "none", "required"):
            choice = {"type": "function", "function": {"name": choice}}
        if choice is None and tool_required:
            choice = "required"   # else none: servers without a tool parser refuse "auto"
        return {"messages": messages, "tools": schemas or None,
                "tool_choice": choice if schemas else None, "conveyor_tools": bound, **kwargs}

    def _validate_chat_with_tools_response(
        self, response: ChatResponse, tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False, **kwargs: Any,
    ) -> ChatResponse:
        """Without parallel calls, keep the first tool call (and drop the others' early work)."""
        calls = tool_selections(response)
        if allow_parallel_tool_calls or len(calls) <= 1:
            return response
        release_calls(self.sched, [c.tool_id for c in calls[1:]])
        msg = response.message
        msg.additional_kwargs["tool_calls"] = msg.additional_kwargs.get("tool_calls", [])[:1]
        keep = calls[0].tool_id
        msg.blocks = [b for b in msg.blocks
                      if not isinstance(b, ToolCallBlock) or b.tool_call_id == keep]
        return response

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any,
    ) -> list[ToolSelection]:
        """The response's tool calls, with the ids the parser gave them."""
        calls = tool_selections(response)
        if not calls and error_on_no_tool_call:
            raise ValueError(f"Expected at least one tool call, but got {len(calls)} tool calls.")
        return calls

    # -- one turn ------------------------------------------------------------------------------
    def _turn(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ModelTurn:
        sampling = {k: getattr(self, k) for k in _SAMPLING if getattr(self, k) is not None}
        sampling.update(self.sampling_kwargs)
        sampling.update({k: v for k, v in kwargs.items() if k not in _NOT_SAMPLING})
        schemas = list(kwargs.get("tools") or ())
        request = ChatRequest(messages=to_openai_messages(messages), tools=schemas,
                              tool_choice=kwargs.get("tool_choice") if schemas else None,
                              sampling=sampling)
        tools = kwargs.get("conveyor_tools")
        return ModelTurn(self.sched, self.backend, request, tool_format=self._format(),
                         tools=tools if isinstance(tools, BoundTools) else BoundTools(),
                         approval_required=self.approval_required, model=self.model,
                         tool_events=watch())

    async def _items(self, turn: ModelTurn) -> AsyncIterator[_Item]:
        """The one flow both drivers run: ``(events, None)`` per delta (also an empty one when
        tool events wait to be dispatched), then ``([], result)``."""
        watching = turn.tool_events
        async for _, events in turn.events():
            if events or (watching is not None and watching.pending()):
                yield events, None
        result = turn.result
        assert result is not None
        last: _Item = ([], result)
        turn.final = last
        yield last

    @staticmethod
    def _tell(turn: ModelTurn, end: bool = False) -> None:
        """Dispatch the tool events queued so far (at the end: the last ones)."""
        watching = turn.tool_events
        if watching is not None:
            dispatch_tool_events(watching.end() if end else watching.drain())

    def _end(self, builder: ResponseBuilder, result: TurnResult | None,
             delta: str | None, turn: ModelTurn) -> ChatResponse:
        if result is None:  # pragma: no cover - the turn always ends with its result
            raise RuntimeError("the model's stream ended without a result")
        self._tell(turn, end=True)
        builder.tool_format = turn.tool_format       # "auto" resolved when the stream began
        response = builder.final(result, delta=delta)
        dispatcher.event(ConveyorTurnEndEvent(**response.additional_kwargs["conveyor"]))
        return response

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        turn, builder, final = self._turn(messages, kwargs), ResponseBuilder(self._format()), None
        for _, result in drive_sync(self.sched, lambda: self._items(turn), turn.abandon,
                                    turn.seen):
            self._tell(turn)
            final = result or final
        return self._end(builder, final, None, turn)

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        turn, builder, final = self._turn(messages, kwargs), ResponseBuilder(self._format()), None
        async for _, result in drive_async(lambda: self._items(turn), turn.abandon,
                                           turn.seen):
            self._tell(turn)
            final = result or final
        return self._end(builder, final, None, turn)

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        turn = self._turn(messages, kwargs)

        def gen() -> ChatResponseGen:
            builder, final = ResponseBuilder(self._format()), None
            for events, result in drive_sync(self.sched, lambda: self._items(turn),
                                             turn.abandon, turn.seen):
                self._tell(turn)
                chunk = builder.chunk(events) if result is None else None
                if chunk is not None:
                    yield chunk
                final = result or final
            yield self._end(builder, final, "", turn)

        return gen()

    async def _astream_chat(self, messages: Sequence[ChatMessage],
                            **kwargs: Any) -> ChatResponseAsyncGen:
        turn = self._turn(messages, kwargs)

        async def gen() -> ChatResponseAsyncGen:
            builder, final = ResponseBuilder(self._format()), None
            async for events, result in drive_async(lambda: self._items(turn), turn.abandon,
                                                    turn.seen):
                self._tell(turn)
                chunk = builder.chunk(events) if result is None else None
                if chunk is not None:
                    yield chunk
                final = result or final
            yield self._end(builder, final, "", turn)

        return gen()

    # -- LlamaIndex's entry points ---------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._achat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._stream_chat(messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage],
                           **kwargs: Any) -> ChatResponseAsyncGen:
        return await self._astream_chat(messages, **kwargs)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return chat_to_completion_decorator(self._chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponse:
        return await achat_to_completion_decorator(self._achat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        return stream_chat_to_completion_decorator(self._stream_chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        return await astream_chat_to_completion_decorator(self._astream_chat)(prompt, **kwargs)

