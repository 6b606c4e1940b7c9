"""The ``chat {model}`` span of one model turn, while :mod:`conveyor_integrations.otel` traces.

``ChatConveyor`` and ``ConveyorLLM`` (through ``adapters.common.ModelTurn``) and
``ConveyorCallbackHandler`` make one per model turn with :func:`chat_span`, which is None when
not instrumented (the adapters' one check per turn). The span carries ``gen_ai.operation.name``
("chat"), ``gen_ai.request.model``, the sampling parameters, and when it ends the model's
message: ``gen_ai.output.messages`` (its text and tool calls), ``gen_ai.response.finish_reasons``
and the token usage; a failed or abandoned stream ends it with an error status. The early
executions' ``execute_tool`` spans are its children when the request's session is made inside
:meth:`ChatSpan.opened`. Example::

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> from conveyor_integrations.otel import instrument, uninstrument
    >>> chat_span("my-model") is None                  # not instrumented: nothing is made
    True
    >>> exporter, provider = InMemorySpanExporter(), TracerProvider()
    >>> provider.add_span_processor(SimpleSpanProcessor(exporter))
    >>> instrument(tracer_provider=provider)
    >>> span = chat_span("my-model")
    >>> span.finish_message(text="Searching.", tool_calls=[("call_1", "search", {"q": "x"})],
    ...                     finish_reason=None, output_tokens=7)
    >>> uninstrument()
    >>> [s] = exporter.get_finished_spans()
    >>> s.name, s.attributes["gen_ai.response.finish_reasons"], s.attributes["gen_ai.usage.output_tokens"]
    ('chat my-model', ('tool_calls',), 7)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .otel import _ns, _tracer

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

    from .backends.base import ChatRequest
    from .turn import TurnResult

__all__ = ["ChatSpan", "chat_span"]

T = TypeVar("T")
_SAMPLING = {"temperature": "gen_ai.request.temperature", "top_p": "gen_ai.request.top_p",
             "max_tokens": "gen_ai.request.max_tokens", "seed": "gen_ai.request.seed"}
_FINISH = {"tool_calls": "tool_call", "function_call": "tool_call"}
"""OpenAI-style finish reasons -> the GenAI output-message ones (others are kept)."""


def chat_span(model: str, *, request: ChatRequest | None = None,
              backend: object = None) -> ChatSpan | None:
    """The ``chat {model}`` span of one model turn when instrumented, else None (the adapters'
    one check per turn). Its parent is the OpenTelemetry context current now: make it where the
    caller's context is (the thread that called the model), start it when the stream starts."""
    tracer = _tracer()
    if tracer is None:
        return None
    from opentelemetry import context

    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
    if backend is not None:
        attrs["conveyor.backend"] = type(backend).__name__
    if request is not None:
        attrs["conveyor.request_id"] = request.request_id
        for key, name in _SAMPLING.items():
            value = request.sampling.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attrs[name] = value
        stop = request.sampling.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
            attrs["gen_ai.request.stop_sequences"] = stop
    return ChatSpan(tracer, context.get_current(), model, attrs)


class ChatSpan:
    """The span of one model turn (made by :func:`chat_span`; used by one thread at a time)."""

    def __init__(self, tracer: Tracer, parent: Context, model: str,
                 attributes: Mapping[str, Any]) -> None:
        self._tracer, self._parent, self._model = tracer, parent, model
        self._attributes = dict(attributes)
        self._span: Span | None = None
        self._ended = False

    def start(self) -> None:
        """Start the span now (once)."""
        if self._span is None:
            from opentelemetry.trace import SpanKind

            self._span = self._tracer.start_span(
                f"chat {self._model}", context=self._parent, kind=SpanKind.CLIENT,
                start_time=_ns(time.perf_counter()), attributes=self._attributes)

    def opened(self, make: Callable[[], T]) -> T:
        """``make()`` with this span current, e.g. the request's session (whose observers
        capture the current context). Attached and detached around the call only: never across
        a ``yield``."""
        from opentelemetry import context, trace

        self.start()
        assert self._span is not None
        token = context.attach(trace.set_span_in_context(self._span, self._parent))
        try:
            return make()
        finally:
            context.detach(token)

    def finish(self, result: TurnResult) -> None:
        """End the span with a turn's outcome: its message, finish reason and usage."""
        calls = [(c.id, c.name, c.args) for c in result.calls]
        if result.aborted_call is not None:
            a = result.aborted_call
            calls.append((a.id, a.name, a.args))
        inp, out = result.token_counts()
        extra: dict[str, Any] = {"conveyor.early_calls": len(result.session.call_ids()),
                                 "conveyor.malformed_calls": len(result.malformed)}
        if result.abort is not None:
            extra["conveyor.abort.reason"] = result.abort.reason
        self.finish_message(text=result.text, tool_calls=calls,
                            finish_reason=result.finish_reason,
                            input_tokens=inp if "prompt_tokens" in result.usage else None,
                            output_tokens=out, attributes=extra)

    def finish_message(self, *, text: str, tool_calls: Sequence[tuple[str | None, str, Any]],
                       finish_reason: str | None, input_tokens: int | None = None,
                       output_tokens: int | None = None,
                       attributes: Mapping[str, Any] | None = None) -> None:
        """End the span with the model's message: its text and its ``(id, name, arguments)``
        tool calls (once; later calls and :meth:`fail` do nothing)."""
        if self._ended:
            return
        self.start()
        span = self._span
        assert span is not None
        reason = finish_reason or ("tool_calls" if tool_calls else "stop")
        parts: list[dict[str, Any]] = [{"type": "text", "content": text}] if text else []
        parts += [{"type": "tool_call", "id": cid, "name": name, "arguments": args}
                  for cid, name, args in tool_calls]
        message = {"role": "assistant", "parts": parts,
                   "finish_reason": _FINISH.get(reason, reason)}
        attrs: dict[str, Any] = {
            "gen_ai.response.finish_reasons": [reason],
            "gen_ai.output.messages": json.dumps([message], ensure_ascii=False, default=repr),
            **(attributes or {})}
        if input_tokens is not None:
            attrs["gen_ai.usage.input_tokens"] = int(input_tokens)
        if output_tokens is not None:
            attrs["gen_ai.usage.output_tokens"] = int(output_tokens)
        span.set_attributes(attrs)
        self._end()

    def fail(self, exc: BaseException) -> None:
        """End the span with an error status (a failed or abandoned stream), unless it ended."""
        if self._ended:
            return
        from opentelemetry.trace import Status, StatusCode

        self.start()
        assert self._span is not None
        if isinstance(exc, GeneratorExit):
            description = "the caller stopped reading the model's stream"
        else:
            description = f"{type(exc).__name__}: {exc}"
        self._span.set_attribute("error.type", type(exc).__qualname__)
        self._span.set_status(Status(StatusCode.ERROR, description))
        self._end()

    def _end(self) -> None:
        self._ended = True
        assert self._span is not None
        self._span.end(end_time=_ns(time.perf_counter()))
