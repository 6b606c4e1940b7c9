"""Drive one model turn: backend deltas -> parser -> scheduler, stopping on an early abort.

This is the loop every adapter runs (and the CLI and the benchmark). It owns the three
guarantees of a turn: a failing or cancelled stream cancels the request's early executions; an
``EarlyAbort`` closes the backend's stream at once (which aborts the engine request); and the
parser is always closed, so no call is left half-open. Example::

    >>> import asyncio
    >>> from conveyor_integrations.backends import Replay, ChatRequest
    >>> from conveyor_integrations.parsing import get_parser
    >>> from conveyor_integrations.scheduler import Scheduler
    >>> text = '<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'
    >>> async def main():
    ...     sched = Scheduler()
    ...     result = await run_turn(Replay(text, tokens_per_s=1e6), ChatRequest([]),
    ...                             parser=get_parser("hermes"), session=sched.session())
    ...     sched.close()
    ...     return result.calls[0].args
    >>> asyncio.run(main())
    {'x': 1}
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .backends.base import Backend, ChatRequest, Delta
from .errors import EarlyAbort
from .events import CallDone, CallMalformed, CallStarted, Event, FieldDone, Text
from .session import RequestSession

if TYPE_CHECKING:
    from .parsing.base import ToolCallParser

__all__ = ["TurnCollector", "TurnResult", "run_turn", "stream_turn"]


async def stream_turn(
    backend: Backend, request: ChatRequest, *, parser: ToolCallParser, session: RequestSession
) -> AsyncIterator[tuple[Delta | None, list[Event]]]:
    """Yield ``(delta, events)`` per backend delta, then ``(None, close_events)``.

    Stops reading the backend as soon as ``session.abort`` is set. Calls the stream leaves
    incomplete never run: when the model stopped at its token limit (``finish_reason="length"``)
    every call still open is malformed, and so is a call that got no argument text at all.
    """
    gen: Any = backend.stream(request)
    guard = _Truncation()
    try:
        async for delta in gen:
            if isinstance(delta, dict):
                guard.see(delta)
            events = parser.feed(delta)
            if events:
                session.handle(events)
            yield delta, events
            if session.abort is not None:
                break
        events = guard.check(parser.close())
        session.handle(events)
        yield None, events
    except BaseException as exc:
        session.cancel(f"request {session.request_id} failed: {type(exc).__name__}: {exc}"
                       if not isinstance(exc, GeneratorExit) else "request cancelled")
        raise
    finally:
        await gen.aclose()


class _Truncation:
    """Watches dict deltas for the finish reason and for calls that got argument text."""

    __slots__ = ("_delta_calls", "_with_text", "finish_reason")

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self._with_text: set[int] = set()
        self._delta_calls = False

    def see(self, delta: dict[str, Any]) -> None:
        reason = delta.get("finish_reason")
        if isinstance(reason, str):
            self.finish_reason = reason
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            self._delta_calls = True
            for i, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, dict) else None
                text = fn.get("arguments") if isinstance(fn, dict) else None
                if isinstance(text, str) and text.strip():
                    index = call.get("index", i)
                    self._with_text.add(index if isinstance(index, int) else i)

    def check(self, events: list[Event]) -> list[Event]:
        """``close()``'s events, with the calls the stream left incomplete made malformed."""
        out: list[Event] = []
        for ev in events:
            if isinstance(ev, CallDone):
                if self.finish_reason == "length":
                    ev = CallMalformed(ev.index, ev.id, ev.name, "the call is truncated: the "
                                       "model stopped at its token limit (finish_reason=length)")
                elif self._delta_calls and ev.index not in self._with_text:
                    ev = CallMalformed(ev.index, ev.id, ev.name,
                                       "the call has no argument text (not even {})")
            out.append(ev)
        return out


@dataclass
class TurnResult:
    """What a turn produced: text, complete and malformed calls, the abort, usage."""

    text: str
    calls: list[CallDone]
    malformed: list[CallMalformed]
    session: RequestSession
    abort: EarlyAbort | None = None
    aborted_call: CallDone | None = None
    """The call an early abort stopped, with the arguments decoded so far."""
    aborted_call_complete: bool = False
    """The aborted call's arguments were complete before decoding stopped."""
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    deltas: int = 0

    def metadata(self, tool_format: str) -> dict[str, Any]:
        """Per-call timings and the early abort, as the adapters report them
        (``response_metadata["conveyor"]``, ``additional_kwargs``): see
        :meth:`RequestSession.metadata`."""
        return self.session.metadata(tool_format)

    def token_counts(self) -> tuple[int, int]:
        """``(prompt_tokens, completion_tokens)``; deltas stand in for tokens without usage."""
        return (int(self.usage.get("prompt_tokens", 0)),
                int(self.usage.get("completion_tokens", self.deltas)))


class TurnCollector:
    """Accumulates a turn's events into a :class:`TurnResult` in O(total length)."""

    def __init__(self, session: RequestSession) -> None:
        self.session = session
        self._text: list[str] = []
        self._calls: list[CallDone] = []
        self._malformed: list[CallMalformed] = []
        self._started: dict[int, CallStarted] = {}
        self._fields: dict[int, dict[str, Any]] = {}
        self._finish_reason: str | None = None
        self._usage: dict[str, int] = {}
        self._deltas = 0

    def add(self, delta: Delta | None, events: list[Event]) -> None:
        """Take one ``(delta, events)`` pair from :func:`stream_turn`."""
        if delta is not None:
            self._deltas += 1
            if isinstance(delta, dict):
                if delta.get("finish_reason"):
                    self._finish_reason = delta["finish_reason"]
                if delta.get("usage"):
                    self._usage = dict(delta["usage"])
        for ev in events:
            if isinstance(ev, Text):
                self._text.append(ev.text)
            elif isinstance(ev, FieldDone):
                if len(ev.path) == 1:
                    self._fields.setdefault(ev.index, {})[str(ev.path[0])] = ev.value
            elif isinstance(ev, CallStarted):
                self._started[ev.index] = ev
            elif isinstance(ev, CallDone):
                self._calls.append(ev)
            elif isinstance(ev, CallMalformed):
                self._malformed.append(ev)

    def result(self) -> TurnResult:
        """The turn so far."""
        s = self.session
        aborted_call, complete = None, False
        if s.abort is not None:
            for idx, started in self._started.items():
                if started.id == s.abort_call_id:
                    done = next((c for c in self._calls if c.index == idx), None)
                    complete = done is not None
                    aborted_call = done or CallDone(idx, started.id, started.name,
                                                    dict(self._fields.get(idx, {})))
            if aborted_call is not None:   # a claim by name and partial arguments finds it
                s.note_aborted(aborted_call)
            self._calls = [c for c in self._calls if c.id != s.abort_call_id]
            self._malformed = [m for m in self._malformed if m.id != s.abort_call_id]
        return TurnResult(
            text="".join(self._text), calls=list(self._calls), malformed=list(self._malformed),
            session=s, abort=s.abort, aborted_call=aborted_call, aborted_call_complete=complete,
            finish_reason="abort" if s.abort is not None else self._finish_reason,
            usage=self._usage, deltas=self._deltas)


async def run_turn(
    backend: Backend, request: ChatRequest, *, parser: ToolCallParser, session: RequestSession
) -> TurnResult:
    """Run a whole turn and return what it produced."""
    collector = TurnCollector(session)
    async for delta, events in stream_turn(backend, request, parser=parser, session=session):
        collector.add(delta, events)
    return collector.result()
