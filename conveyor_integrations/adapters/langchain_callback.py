"""``ConveyorCallbackHandler``: partial execution for a LangChain chat model you already have.

Attach it to any chat model that streams tool calls, e.g.
``ChatOpenAI(base_url=<vllm serve>, streaming=True, callbacks=[handler])``. It reads each
``on_llm_new_token(..., chunk=ChatGenerationChunk)``'s ``tool_call_chunks``, feeds them to the
OpenAI-delta parser and the scheduler, and so starts the decorated tools early; the wrapped tools
then claim their results by call id. The model class is not changed, so the handler cannot stop its
decoding by itself: an early abort is recorded in :attr:`aborts`, and raised out of the model
call only with ``stop_on_abort=True``. Example::

    handler = ConveyorCallbackHandler(tools=[web_search])
    llm = ChatOpenAI(base_url="http://127.0.0.1:8000/v1", streaming=True, callbacks=[handler])
    agent = create_agent(llm, tools=[web_search])
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from ..errors import EarlyAbort
from ..parsing import get_parser
from ..parsing.base import ToolCallParser
from ..scheduler import Scheduler, default_scheduler
from ..session import RequestSession

__all__ = ["ConveyorCallbackHandler"]


def _name(tool: Any) -> str:
    if isinstance(tool, str):
        return tool
    return str(getattr(tool, "name", None) or getattr(tool, "__name__", tool))


class ConveyorCallbackHandler(BaseCallbackHandler):
    """Starts decorated tools while another LangChain chat model streams its tool calls.

    ``tools``: the decorated tools (or their names) it may start early; ``None``: every tool
    registered with the scheduler.
    """

    run_inline = True  # keep the token order: run in the model's own thread or loop

    def __init__(self, tools: Sequence[Any] | None = None, *, scheduler: Scheduler | None = None,
                 approval_required: Sequence[str] = (), stop_on_abort: bool = False) -> None:
        self.tool_names = None if tools is None else [_name(t) for t in tools]
        self.scheduler = scheduler
        self.approval_required = tuple(approval_required)
        self.stop_on_abort = stop_on_abort
        self.raise_error = stop_on_abort
        self.aborts: dict[str, EarlyAbort] = {}
        """Early aborts by tool call id."""
        self.sessions: list[RequestSession] = []
        """Every finished run's session (its ``timings`` say when each tool started)."""
        self._runs: dict[UUID, tuple[ToolCallParser, RequestSession]] = {}
        self._lock = threading.Lock()

    @property
    def sched(self) -> Scheduler:
        """The scheduler the decorated tools are registered with."""
        return self.scheduler if self.scheduler is not None else default_scheduler()

    def _open(self, run_id: UUID) -> tuple[ToolCallParser, RequestSession]:
        with self._lock:
            state = self._runs.get(run_id)
            if state is None:
                sched = self.sched
                names = self.tool_names
                parser = get_parser("openai", streams=sched.parser_streams(names))
                session = sched.session(f"lc-{run_id}", tools=names,
                                        approval_required=self.approval_required)
                state = self._runs[run_id] = (parser, session)
            return state

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[Any]], *,
                            run_id: UUID, **kwargs: Any) -> None:
        params = kwargs.get("invocation_params") or {}
        if params.get("_type") == "conveyor":
            return  # ChatConveyor does this itself
        self._open(run_id)

    def on_llm_new_token(self, token: Any, *, chunk: Any = None, run_id: UUID,
                         parent_run_id: UUID | None = None, tags: list[str] | None = None,
                         **kwargs: Any) -> None:
        state = self._runs.get(run_id)
        message = getattr(chunk, "message", None)
        pieces = getattr(message, "tool_call_chunks", None)
        if state is None or not pieces:
            return
        parser, session = state
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
        parser, session = state
        session.handle(parser.close())
        self._record(session)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            state = self._runs.pop(run_id, None)
        if state is None:
            return
        state[1].cancel(f"model run failed: {type(error).__name__}: {error}")
        self._record(state[1])

    def _record(self, session: RequestSession) -> None:
        if session.abort is not None and session.abort_call_id is not None:
            self.aborts[session.abort_call_id] = session.abort
        self.sessions.append(session)
        del self.sessions[:-256]  # bounded: the recent runs are enough to inspect
