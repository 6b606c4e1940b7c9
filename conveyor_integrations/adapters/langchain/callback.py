"""``ConveyorCallbackHandler``: partial execution for a LangChain chat model you already have.

Attach it to any chat model that streams tool calls, e.g.
``ChatOpenAI(base_url=<vllm serve>, streaming=True, callbacks=[handler])``. It reads each
``on_llm_new_token(..., chunk=ChatGenerationChunk)``'s ``tool_call_chunks``, feeds them to the
OpenAI-delta parser and a session, and so starts the decorated tools it was given early; the
wrapped tools then claim their results by call id. A model that does not stream gives it nothing
to read: it warns once. The model class is not changed, so the handler cannot stop its decoding
by itself: an early abort is recorded in :attr:`aborts`, and raised out of the model call only
with ``stop_on_abort=True``. The message the model returns gets the per-call timings under
``response_metadata["conveyor"]``. Run inside a runnable (an agent's node, a chain) whose
handlers take custom events, it dispatches ``conveyor_tool_started``/``conveyor_tool_result``
for the model's run, as ``ChatConveyor`` does (see :mod:`.custom_events`); while
:mod:`conveyor_integrations.otel` traces, each model run gets a ``chat {model}`` span.
Example::

    handler = ConveyorCallbackHandler(tools=[web_search])
    llm = ChatOpenAI(base_url="http://127.0.0.1:8000/v1", streaming=True, callbacks=[handler])
    agent = create_agent(llm, tools=[web_search])
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import warnings
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
from langchain_core.runnables.config import ensure_config, get_callback_manager_for_config

from ...errors import EarlyAbort
from ...otel_chat import ChatSpan, chat_span
from ...parsing import get_parser
from ...parsing.base import ToolCallParser
from ...policy import BoundTools
from ...scheduler import Scheduler
from ...session import RequestSession
from ..common import resolve_scheduler
from ..tool_events import ToolEvent, ToolEvents
from .custom_events import listening

__all__ = ["ConveyorCallbackHandler"]

_MEMORY = 256
_log = logging.getLogger("conveyor_integrations")


def _called_from_a_coroutine(depth: int = 4) -> bool:
    """LangChain's async callback manager calls this handler (inline) from a coroutine; its
    sync manager from plain functions. Looks at the few frames above the handler's method."""
    frame = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return False
        if frame.f_code.co_flags & inspect.CO_COROUTINE:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


class _Run:
    """One model run the handler follows."""

    __slots__ = ("chat", "parser", "relay", "session", "tokens", "watching")

    def __init__(self, parser: ToolCallParser, session: RequestSession, chat: ChatSpan | None,
                 watching: ToolEvents | None, relay: CallbackManager | None) -> None:
        self.parser, self.session, self.chat = parser, session, chat
        self.watching, self.relay = watching, relay
        self.tokens = 0


def _relay() -> CallbackManager | None:
    """The callback manager of the runnable that runs the model (from the context), when its
    handlers take custom events: the handler has no other way to reach them."""
    try:
        manager = get_callback_manager_for_config(ensure_config())
    except Exception:  # noqa: BLE001 - no runnable context: no events
        return None
    if manager.parent_run_id is None or not listening(manager.handlers):
        return None
    return manager


def _model_name(serialized: dict[str, Any], params: dict[str, Any]) -> str:
    for key in ("model_name", "model", "model_id"):
        if isinstance(params.get(key), str):
            return str(params[key])
    name = (serialized or {}).get("name")
    return str(name) if name else "unknown"


class ConveyorCallbackHandler(BaseCallbackHandler):
    """Starts decorated tools while another LangChain chat model streams its tool calls.

    ``tools``: the decorated tool objects it may start early (the same objects the agent holds).
    """

    run_inline = True  # keep the token order: run in the model's own thread or loop

    def __init__(self, tools: Sequence[Any], *, scheduler: Scheduler | None = None,
                 approval_required: Sequence[str] = (), stop_on_abort: bool = False) -> None:
        if tools is None or isinstance(tools, (str, bytes)):
            raise TypeError("ConveyorCallbackHandler(tools=[...]) takes the decorated tool "
                            "objects it may start early")
        self.tools = BoundTools(tools)
        self.scheduler = scheduler
        self.approval_required = tuple(approval_required)
        self.stop_on_abort = stop_on_abort
        self.raise_error = stop_on_abort
        self.aborts: OrderedDict[str, EarlyAbort] = OrderedDict()
        """Early aborts by tool call id (the most recent ones)."""
        self.sessions: deque[RequestSession] = deque(maxlen=_MEMORY)
        """The recent runs' sessions (their ``timings`` say when each tool started)."""
        self._runs: dict[UUID, _Run] = {}
        self._lock = threading.Lock()
        self._warned = False

    @property
    def sched(self) -> Scheduler:
        """The scheduler that runs the early executions."""
        return resolve_scheduler(self.scheduler)

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"ConveyorCallbackHandler: {why}; no tool can start early. Make the "
                          "model stream (e.g. ChatOpenAI(streaming=True)).", UserWarning,
                          stacklevel=3)

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[Any]], *,
                            run_id: UUID, **kwargs: Any) -> None:
        params = kwargs.get("invocation_params") or {}
        if params.get("_type") == "conveyor":
            return  # ChatConveyor does this itself
        if params.get("stream") is False or params.get("streaming") is False:
            self._warn("the model does not stream its tokens")
        sched = self.sched
        parser = get_parser("openai", streams=self.tools.streams())
        # async tools run on the caller's loop only when the model runs on it (ainvoke); a sync
        # invoke from a thread whose loop is running (a notebook cell) blocks that loop
        loop = None if _called_from_a_coroutine() else sched.loop
        relay = _relay()
        watching = ToolEvents() if relay is not None else None
        chat = chat_span(_model_name(serialized, params))

        # the calls whose results this request carries (speculative runs they predicted)
        follows = [c for c in (getattr(m, "tool_call_id", None) for m in
                               (messages[0] if messages else ())) if isinstance(c, str)]

        def make() -> RequestSession:
            return sched.session(f"lc-{run_id}", tools=self.tools,
                                 approval_required=self.approval_required, loop=loop,
                                 on_abort=self._note_abort,
                                 observers=() if watching is None else (watching,),
                                 follows=follows)

        session = make() if chat is None else chat.opened(make)
        with self._lock:
            self._runs[run_id] = _Run(parser, session, chat, watching, relay)

    @staticmethod
    def _tell(state: _Run, run_id: UUID, items: list[ToolEvent]) -> None:
        relay = state.relay
        if relay is None:
            return
        for item in items:
            try:
                relay.on_custom_event(item.name, item.data, run_id=run_id)
            except Exception:  # noqa: BLE001 - an event must not break the model's run
                _log.warning("dispatching %s failed", item.name, exc_info=True)

    def on_llm_new_token(self, token: Any, *, chunk: Any = None, run_id: UUID,
                         parent_run_id: UUID | None = None, tags: list[str] | None = None,
                         **kwargs: Any) -> None:
        state = self._runs.get(run_id)
        if state is None:
            return
        state.tokens += 1
        if state.watching is not None and state.watching.pending():
            self._tell(state, run_id, state.watching.drain())
        message = getattr(chunk, "message", None)
        pieces = getattr(message, "tool_call_chunks", None)
        if not pieces:
            return
        parser, session = state.parser, state.session
        calls = [{"index": p.get("index") or 0, "id": p.get("id"),
                  "function": {"name": p.get("name"), "arguments": p.get("args")}}
                 for p in pieces]
        events = parser.feed({"tool_calls": calls})
        if events:
            session.handle(events)
        if session.abort is not None and self.stop_on_abort:
            raise session.abort

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            state = self._runs.pop(run_id, None)
        if state is None:
            return
        parser, session = state.parser, state.session
        session.handle(parser.close())
        messages = [getattr(g, "message", None) for gs in getattr(response, "generations", [])
                    for g in gs]
        if state.tokens == 0 and any(getattr(m, "tool_calls", None) for m in messages):
            self._warn("the model returned tool calls without streaming a token")
        for m in messages:
            meta = getattr(m, "response_metadata", None)
            if isinstance(meta, dict):
                meta["conveyor"] = session.metadata("openai")
        if state.watching is not None:
            self._tell(state, run_id, state.watching.end())
        if state.chat is not None:
            _finish_chat(state.chat, session, messages[0] if messages else None)
        self._record(session)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            state = self._runs.pop(run_id, None)
        if state is None:
            return
        state.session.cancel(f"model run failed: {type(error).__name__}: {error}")
        if state.chat is not None:
            state.chat.fail(error)
        self._record(state.session)

    def _note_abort(self, call_id: str, exc: EarlyAbort) -> None:
        # on the session's loop, when the abort happens (under a sync invoke that can be after
        # the model run ended)
        with self._lock:
            self.aborts[call_id] = exc
            while len(self.aborts) > _MEMORY:
                self.aborts.popitem(last=False)

    def _record(self, session: RequestSession) -> None:
        self.sessions.append(session)


def _finish_chat(chat: ChatSpan, session: RequestSession, message: Any) -> None:
    """End a run's chat span with the message the model returned."""
    meta = getattr(message, "response_metadata", None) or {}
    usage = getattr(message, "usage_metadata", None) or {}
    content = getattr(message, "content", "")
    text = content if isinstance(content, str) else ""
    calls = [(c.get("id"), str(c.get("name")), c.get("args"))
             for c in getattr(message, "tool_calls", None) or ()]
    reason = meta.get("finish_reason") if isinstance(meta, dict) else None
    chat.finish_message(text=text, tool_calls=calls,
                        finish_reason=reason if isinstance(reason, str) else None,
                        input_tokens=usage.get("input_tokens"),
                        output_tokens=usage.get("output_tokens"),
                        attributes={"conveyor.early_calls": len(session.call_ids())})
