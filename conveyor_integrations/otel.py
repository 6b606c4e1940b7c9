"""OpenTelemetry spans for early tool executions and model turns (extra ``otel``).

``instrument()`` adds an observer (see :mod:`conveyor_integrations.observers`) that gives each
early execution one ``execute_tool {tool}`` span, with the GenAI semantic-convention attributes
(``gen_ai.operation.name``, ``gen_ai.tool.name``, ``gen_ai.tool.call.id``, ``gen_ai.tool.type``),
``conveyor.*`` attributes (``early``, ``request_id``, ``complete_only``, ``status``, ``reran``,
``claimed``, ``pieces``, ``text_chunks``) and one span event per step (``tool_start``,
``piece``, ``finish``, ``abort``, ``rerun``, ``claim``, ``cancel``). The span starts when the
execution is made and ends once it both finished and was claimed, or when it is cancelled or
aborted; errors, aborts and cancels set an error status. Its parent is the span current where
the model's stream runs: the ``chat {model}`` span that ``ChatConveyor``, ``ConveyorLLM`` and
``ConveyorCallbackHandler`` open per model turn while instrumented (``gen_ai.request.model``,
token usage, ``gen_ai.response.finish_reasons``, and ``gen_ai.output.messages`` with the text
and the tool calls; made in :mod:`conveyor_integrations.otel_chat`), itself a child of whatever
span is current around the model call (a LangChain or LlamaIndex span of LangSmith's OTel mode
or OpenInference, a span of yours).

OpenTelemetry is imported here and in :mod:`.otel_chat` only, and only once ``instrument()`` is
called; uninstrumented, nothing is traced and nothing is paid. Example::

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> from conveyor_integrations import partial_tool
    >>> from conveyor_integrations.events import CallDone, CallStarted, FieldDone, StreamDone
    >>> from conveyor_integrations.scheduler import Scheduler
    >>> exporter, provider = InMemorySpanExporter(), TracerProvider()
    >>> provider.add_span_processor(SimpleSpanProcessor(exporter))
    >>> instrument(tracer_provider=provider)
    >>> @partial_tool(start_on=["text"])
    ... def shout(text: str) -> str: return text.upper()
    >>> sched = Scheduler()
    >>> s = sched.session(tools=[shout])
    >>> s.handle([CallStarted(0, "c1", "shout"), FieldDone(0, ("text",), "hi"),
    ...           CallDone(0, "c1", "shout", {"text": "hi"}), StreamDone()])
    >>> sched.claim("c1", spec=shout.conveyor_spec)
    (True, 'HI')
    >>> sched.close()
    >>> uninstrument()
    >>> [(span.name, span.attributes["gen_ai.tool.call.id"]) for span in exporter.get_finished_spans()]
    [('execute_tool shout', 'c1')]
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from .observers import ExecutionEvent, Observe, add_observer, remove_observer

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["instrument", "uninstrument"]

_INSTALL = "pip install 'conveyor-integrations[otel]'"
_EPOCH_NS = time.time_ns() - time.perf_counter_ns()
"""Added to a ``perf_counter`` time in ns, the epoch time in ns (one offset for the process)."""


def _ns(perf: float) -> int:
    return int(perf * 1e9) + _EPOCH_NS


class _Tracing:
    """The observer ``instrument()`` adds: one :class:`_RequestSpans` per request."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def open(self, request_id: str) -> Observe:
        from opentelemetry import context

        return _RequestSpans(self.tracer, context.get_current()).note


_lock = threading.Lock()
_state: _Tracing | None = None


def instrument(tracer_provider: TracerProvider | None = None) -> None:
    """Trace early executions and model turns from now on, with ``tracer_provider`` (None:
    OpenTelemetry's global one). Calling it again switches the provider; it never traces
    twice. Raises ``ImportError`` when OpenTelemetry is not installed."""
    global _state
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ImportError("conveyor_integrations.otel needs OpenTelemetry (opentelemetry-api); "
                          f"install it with: {_INSTALL}") from exc
    tracer = trace.get_tracer("conveyor_integrations", _version(),
                              tracer_provider=tracer_provider)
    new = _Tracing(tracer)
    with _lock:
        old, _state = _state, new
        if old is not None:
            remove_observer(old)
        add_observer(new)


def uninstrument() -> None:
    """Stop tracing new requests (their spans already open still end); a no-op when not
    instrumented."""
    global _state
    with _lock:
        old, _state = _state, None
        if old is not None:
            remove_observer(old)


def _tracer() -> Tracer | None:
    """The tracer while instrumented, else None (for :mod:`.otel_chat`)."""
    state = _state
    return None if state is None else state.tracer


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("conveyor-integrations")
    except PackageNotFoundError:
        return None


# -- execution spans -----------------------------------------------------------------------------
class _Exec:
    __slots__ = ("claimed", "finished", "pieces", "span")

    def __init__(self, span: Span) -> None:
        self.span, self.finished, self.claimed, self.pieces = span, False, False, 0


class _RequestSpans:
    """The execution spans of one request; steps come from any thread."""

    def __init__(self, tracer: Tracer, parent: Context) -> None:
        self._tracer, self._parent = tracer, parent
        self._lock = threading.Lock()
        self._open: dict[str, _Exec] = {}

    def note(self, ev: ExecutionEvent) -> None:
        with self._lock:
            if ev.kind == "start":
                self._start(ev)
                return
            ex = self._open.get(ev.call_id)
            if ex is None:
                return
            span, detail, at = ex.span, ev.detail, _ns(ev.at)
            if ev.kind == "piece":
                ex.pieces += 1
                attrs: dict[str, Any] = {"conveyor.path": ".".join(map(str, detail["path"]))}
                if detail.get("item") is not None:
                    attrs["conveyor.item"] = int(detail["item"])
                span.add_event("piece", attrs, timestamp=at)
                span.set_attribute("conveyor.pieces", ex.pieces)
            elif ev.kind == "finish":
                self._finish(ev, ex)
            elif ev.kind == "abort":
                reason = str(detail.get("reason", ""))
                span.add_event("abort", {"conveyor.reason": reason}, timestamp=at)
                span.set_attributes({"conveyor.status": "aborted", "conveyor.reason": reason})
                self._end(ev, ex, f"early abort: {reason}")
            elif ev.kind == "claim":
                span.add_event("claim", timestamp=at)
                span.set_attribute("conveyor.claimed", True)
                ex.claimed = True
                if ex.finished:
                    self._end(ev, ex, None)
            elif ev.kind == "cancel":
                reason, status = str(detail.get("reason", "")), str(detail.get("status", ""))
                span.add_event("cancel", {"conveyor.reason": reason, "conveyor.status": status},
                               timestamp=at)
                span.set_attributes({"conveyor.status": status or "cancelled",
                                     "conveyor.cancelled": True, "conveyor.reason": reason})
                self._end(ev, ex, f"cancelled: {reason}")
            else:                                   # tool_start, rerun
                span.add_event(ev.kind, timestamp=at)
                if ev.kind == "rerun":
                    span.set_attribute("conveyor.reran", True)

    def _start(self, ev: ExecutionEvent) -> None:
        from opentelemetry.trace import SpanKind

        span = self._tracer.start_span(
            f"execute_tool {ev.tool}", context=self._parent, kind=SpanKind.INTERNAL,
            start_time=_ns(ev.at),
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": ev.tool,
                        "gen_ai.tool.call.id": ev.call_id, "gen_ai.tool.type": "function",
                        "conveyor.early": True, "conveyor.request_id": ev.request_id,
                        "conveyor.call.index": ev.index,
                        "conveyor.complete_only": bool(ev.detail.get("complete_only", False)),
                        "conveyor.status": "running", "conveyor.reran": False,
                        "conveyor.claimed": False, "conveyor.pieces": 0})
        old = self._open.pop(ev.call_id, None)
        if old is not None:           # a call id reused within the request: close the old one
            old.span.end(end_time=_ns(ev.at))
        self._open[ev.call_id] = _Exec(span)

    def _finish(self, ev: ExecutionEvent, ex: _Exec) -> None:
        detail, span = ev.detail, ex.span
        status = str(detail.get("status", ""))
        attrs: dict[str, Any] = {"conveyor.status": status,
                                 "conveyor.text_chunks": int(detail.get("text_chunks", 0))}
        if detail.get("error"):
            attrs["error.type"] = str(detail["error"])
        span.add_event("finish", attrs, timestamp=_ns(ev.at))
        span.set_attributes(attrs)
        ex.finished = True
        if status == "error":
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, f"tool raised {detail.get('error')}"))
        if ex.claimed and status != "aborted":     # an abort ends with its abort step
            self._end(ev, ex, None)

    def _end(self, ev: ExecutionEvent, ex: _Exec, error: str | None) -> None:
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            ex.span.set_status(Status(StatusCode.ERROR, error))
        ex.span.end(end_time=_ns(ev.at))
        if self._open.get(ev.call_id) is ex:
            del self._open[ev.call_id]
