"""What the LangChain and LlamaIndex adapters both do: open a turn, drive it, wrap a tool.

One flow, two thin drivers (httpx's pattern): :class:`ModelTurn` is the turn as an async
generator of ``(delta, events)``; :func:`drive_async` runs it on the caller's loop (so the
request's early executions, async tools included, run where the caller's resources live), and
:func:`drive_sync` runs it on the scheduler's loop for callers without one and carries the items
to the caller's thread. When the consumer leaves before the turn's end (``break``, an exception,
a cancelled task) the producer is closed, which closes the backend's stream (aborting the
request) and cancels the turn's early executions. Example::

    >>> from conveyor_integrations.scheduler import Scheduler
    >>> async def numbers():
    ...     for i in range(3):
    ...         yield i
    >>> s = Scheduler()
    >>> list(drive_sync(s, numbers))
    [0, 1, 2]
    >>> s.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import queue
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

from ..backends.base import Backend, ChatRequest, Delta, auto_tool_format
from ..events import Event
from ..otel_chat import chat_span
from ..parsing import PARSERS, get_parser
from ..parsing.base import ToolCallParser
from ..policy import BoundTools
from ..scheduler import Scheduler, default_scheduler
from ..session import RequestSession
from ..turn import TurnCollector, TurnResult, stream_turn
from .tool_events import ToolEvents

__all__ = ["ModelTurn", "check_tool_format", "drive_async", "drive_sync", "history_call_ids",
           "keyword_view", "resolve_scheduler", "schema_fields", "turn_parser"]

T = TypeVar("T")
_log = logging.getLogger("conveyor_integrations")
_ITEM, _ERROR, _END = 0, 1, 2
_NOT_YET = object()


def check_tool_format(name: Any) -> None:
    """A model's ``tool_format`` is "auto", None or a registered format: else a ``ValueError``
    when the model is made, naming the formats (never at its first turn).

    >>> check_tool_format("xml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown tool_format 'xml': use "auto" (the default) or one of deepseek_v3, ...
    """
    from ..parsing import PARSERS

    if name is not None and name != "auto" and name not in PARSERS:
        raise ValueError(f"unknown tool_format {name!r}: use \"auto\" (the default) or one of "
                         f"{', '.join(sorted(PARSERS))}")


def resolve_scheduler(scheduler: Scheduler | None) -> Scheduler:
    """``scheduler``, or the process-wide default as it is now (looked up at each use)."""
    return scheduler if scheduler is not None else default_scheduler()


def turn_parser(fmt: str, tools: Sequence[Mapping[str, Any]],
                streams: Mapping[str, Mapping[str, str]],
                text_format: str | None = None) -> ToolCallParser:
    """The parser of one turn in ``fmt``: it knows the bound tools' names and streamed fields,
    and, for formats that write values as raw text (``qwen3_xml``), the tools' JSON schemas,
    by which it converts them (``"7"`` to 7 for an integer parameter). ``text_format``: with
    ``fmt="openai"``, the format of calls left in the message text (the backend's
    ``text_tool_format``).

    >>> tools = [{"type": "function", "function": {"name": "f", "parameters": {
    ...     "type": "object", "properties": {"n": {"type": "integer"}}}}}]
    >>> p = turn_parser("qwen3_xml", tools, {})
    >>> [e.args for e in p.feed("<tool_call><function=f><parameter=n>7</parameter></function>"
    ...                         "</tool_call>") if type(e).__name__ == "CallDone"]
    [{'n': 7}]
    """
    names = [t["function"]["name"] for t in tools]
    kw: dict[str, Any] = {}
    if "schemas" in inspect.signature(PARSERS[fmt]).parameters:
        kw["schemas"] = {t["function"]["name"]: t["function"].get("parameters") or {}
                         for t in tools}
    if fmt == "openai" and text_format is not None and names:
        kw["text_parser"] = turn_parser(text_format, tools, streams)
    return get_parser(fmt, tools=names or None, streams=streams, **kw)


class ModelTurn:
    """One model turn of an adapter: the parser and the session, made on the loop that runs it.

    ``events()`` yields ``(delta, events)`` and ends with ``(None, close_events)``; ``result``
    is the :class:`TurnResult` once the stream ended. ``abandon()`` cancels the request's early
    executions unless the turn's result reached the caller (``delivered``). ``tool_format``
    "auto" becomes the backend's format when the stream starts (:func:`auto_tool_format`). ``tool_events``
    watches the request for the framework's events (the adapter drains it on its own thread).
    Made on the caller's thread: while :mod:`~conveyor_integrations.otel` traces, the turn's
    ``chat {model}`` span is a child of the OpenTelemetry context current there, and it is the
    current span when the session is made, so the early executions' spans are its children.
    """

    def __init__(self, sched: Scheduler, backend: Backend, request: ChatRequest, *,
                 tool_format: str, tools: BoundTools,
                 approval_required: Collection[str] = (), model: str = "conveyor",
                 tool_events: ToolEvents | None = None) -> None:
        self.sched, self.backend, self.request = sched, backend, request
        self.tool_format, self.tools = tool_format, tools
        self.approval_required = tuple(approval_required)
        self.tool_events = tool_events
        self.session: RequestSession | None = None
        self.result: TurnResult | None = None
        self.final: object = _NOT_YET
        """The item that carries the turn's result (set by the producer before it yields it)."""
        self.delivered = False
        self.chat = chat_span(model, request=request, backend=backend)

    def _open_session(self) -> RequestSession:
        return self.sched.session(
            self.request.request_id, tools=self.tools, approval_required=self.approval_required,
            follows=history_call_ids(self.request.messages),
            observers=() if self.tool_events is None else (self.tool_events,))

    async def events(self) -> AsyncIterator[tuple[Delta | None, list[Event]]]:
        if self.tool_format == "auto":      # resolved once, before the first token
            self.tool_format = await auto_tool_format(self.backend)
        parser = turn_parser(self.tool_format, self.request.tools, self.tools.streams(),
                             getattr(self.backend, "text_tool_format", None))
        chat = self.chat
        session = self.session = (self._open_session() if chat is None
                                  else chat.opened(self._open_session))
        collector = TurnCollector(session)
        try:
            async for delta, events in stream_turn(self.backend, self.request, parser=parser,
                                                   session=session):
                collector.add(delta, events)
                if delta is None:
                    self.result = collector.result()
                    if chat is not None:
                        chat.finish(self.result)
                yield delta, events
        except BaseException as exc:
            if chat is not None:
                chat.fail(exc)
            raise

    def seen(self, item: object) -> None:
        """The consumer received ``item``; once it is the final one, the turn is delivered."""
        if item is self.final:
            self.delivered = True

    def abandon(self) -> None:
        """The consumer left early: nobody will invoke this turn's tools."""
        if not self.delivered and self.session is not None:
            self.session.cancel("the caller stopped reading the model's stream")


def drive_sync(sched: Scheduler, make: Callable[[], AsyncIterator[T]],
               on_abandon: Callable[[], None] | None = None,
               on_item: Callable[[T], None] | None = None) -> Iterator[T]:
    """Iterate ``make()``, run on the scheduler's loop, from a synchronous caller.

    ``on_item`` sees each item as the caller receives it; ``on_abandon`` runs when the caller
    leaves before the end."""
    q: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()

    async def pump() -> None:
        try:
            async for item in make():
                q.put((_ITEM, item))
        except BaseException as exc:
            q.put((_ERROR, exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            q.put((_END, None))

    fut = sched.submit(pump())
    ended = False
    try:
        while True:
            kind, item = q.get()
            if kind == _ITEM:
                if on_item is not None:
                    on_item(item)
                yield item
            else:
                ended = True
                if kind == _ERROR:
                    raise item
                return
    finally:
        if not ended and on_abandon is not None:
            on_abandon()
        if not fut.done():
            fut.cancel()
            try:
                fut.result(timeout=30)
            except concurrent.futures.CancelledError:
                pass  # cancelled on purpose: the consumer stopped early
            except Exception as exc:  # noqa: BLE001 - the consumer's own exit comes first
                _log.debug("stream producer ended with %r after the consumer left", exc)


async def drive_async(make: Callable[[], AsyncIterator[T]],
                      on_abandon: Callable[[], None] | None = None,
                      on_item: Callable[[T], None] | None = None) -> AsyncIterator[T]:
    """Iterate ``make()`` on the running loop (see :func:`drive_sync` for the callbacks)."""
    ended = False
    gen = make()
    try:
        async for item in gen:
            if on_item is not None:
                on_item(item)
            yield item
        ended = True
    finally:
        if not ended:
            if on_abandon is not None:
                on_abandon()
            await gen.aclose()  # type: ignore[attr-defined]


def schema_fields(schema: Any) -> tuple[frozenset[str] | None, dict[str, Any]]:
    """An args schema's field names and defaults (a pydantic model, or a JSON schema as MCP
    tools carry), or ``(None, {})`` when it does not say."""
    if isinstance(schema, Mapping):
        props = schema.get("properties")
        if not isinstance(props, Mapping) or schema.get("additionalProperties") is True:
            return None, {}
        return frozenset(props), {k: v["default"] for k, v in props.items()
                                  if isinstance(v, Mapping) and "default" in v}
    fields = getattr(schema, "model_fields", None)
    if not isinstance(fields, Mapping):
        return None, {}
    defaults = {name: info.get_default(call_default_factory=True)
                for name, info in fields.items() if not info.is_required()}
    return frozenset(fields), defaults


def keyword_view(run: Callable[[dict[str, Any]], Any], fields: frozenset[str] | None,
                 defaults: Mapping[str, Any]) -> Callable[..., Any]:
    """``run(args)`` as a function of keyword arguments whose signature names ``fields`` (so the
    options of ``partial_tool`` are checked against the tool's schema)."""

    def call(**kw: Any) -> Any:
        return run(kw)

    if fields is not None:
        call.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY,
                              default=defaults.get(n, inspect.Parameter.empty))
            for n in sorted(fields)])
    return call


def history_call_ids(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """The call ids of the tool results in an OpenAI-style history (what a request follows)."""
    return [m["tool_call_id"] for m in messages
            if m.get("role") == "tool" and isinstance(m.get("tool_call_id"), str)]
