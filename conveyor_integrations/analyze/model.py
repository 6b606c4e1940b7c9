"""A recorded agent run, whatever it was recorded by: its model turns and the tool runs after each.

Every reader of ``conveyor analyze`` (LangSmith exports, OTLP JSON spans, chat-completion logs,
this library's ``results.json``) makes :class:`RecordedRun` s; :mod:`.estimate` works on them
alone. All times are seconds since the run's ``origin`` (any clock; only differences count).

A turn's message is known in one of two ways:

- ``chunks``: what the client received, each with its arrival time (text pieces for a text
  format such as ``hermes``, or OpenAI chat-completion chunk ``delta`` dicts for ``openai``);
- ``text`` and/or ``tool_calls`` only (the final message, as most traces keep it): the estimate
  then decodes it at the turn's own rate (``output_tokens`` over the turn's duration) or at the
  rate the user gives. ``tool_calls`` are OpenAI-style ``{"id", "name", "arguments"}`` dicts,
  ``arguments`` a dict or its JSON text.

Example::

    >>> turn = RecordedTurn(start=0.0, end=2.0, text="hi", tool_calls=[
    ...     {"id": "call_1", "name": "search", "arguments": {"query": "paris"}}],
    ...     tools=[RecordedTool("search", 2.1, 3.0, call_id="call_1")])
    >>> run = RecordedRun("r1", "chatlog", [turn])
    >>> run.duration_s, turn.tools[0].duration_s
    (3.0, 0.9)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecordedRun", "RecordedTool", "RecordedTurn"]


@dataclass
class RecordedTool:
    """One tool run as recorded (seconds since the run's origin)."""

    name: str
    start: float
    end: float
    call_id: str | None = None
    """The model's tool-call id it answered, where the trace keeps it (pairs run and call)."""
    args: dict[str, Any] | None = None
    error: bool = False
    piece_s: list[float] | None = None
    """The seconds of each piece of its work in order, where the trace timed them (this
    library's ``results.json``); the estimate then uses them instead of splitting the whole."""

    @property
    def duration_s(self) -> float:
        """How long the tool ran."""
        return round(max(0.0, self.end - self.start), 9)


@dataclass
class RecordedTurn:
    """One model message and the tool runs that answered its calls."""

    start: float
    """When the model request was sent."""
    end: float
    """When the message was complete (its last chunk)."""
    chunks: list[tuple[float, Any]] = field(default_factory=list)
    """``(arrival time, text piece or OpenAI delta dict)``, in order; empty when unknown."""
    text: str | None = None
    """The message's text when ``chunks`` are unknown (it may hold the calls, as hermes text)."""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    """The message's structured calls when ``chunks`` are unknown."""
    tool_format: str | None = None
    """The parser of the chunks or text (``openai`` for delta dicts and structured calls; a
    text format otherwise); None: the reader did not know (``--tool-format`` or ``hermes``)."""
    output_tokens: int | None = None
    tools: list[RecordedTool] = field(default_factory=list)
    """The tool runs between this message and the next model request, in start order."""
    model: str | None = None


@dataclass
class RecordedRun:
    """One agent run: its turns in order."""

    name: str
    source: str
    """``langsmith``, ``otlp``, ``chatlog`` or ``results``."""
    turns: list[RecordedTurn]
    origin_note: str = ""
    """Where it came from (file and record), for messages."""
    strategies: dict[str, Any] = field(default_factory=dict)
    """Tool name -> :class:`~.strategy.Strategy` the recording itself states (this library's
    ``results.json``); the user's ``--tools``/``--strategy`` take precedence."""
    measured: dict[str, float] = field(default_factory=dict)
    """What the recording measured beside it (``results.json``: the partial run's latency,
    ``complete_call``, ``ideal``), to set the estimate against."""

    @property
    def start(self) -> float:
        """The first model request."""
        return self.turns[0].start if self.turns else 0.0

    @property
    def end(self) -> float:
        """The last model message or tool result."""
        ends = [t.end for t in self.turns] + [x.end for t in self.turns for x in t.tools]
        return max(ends, default=0.0)

    @property
    def duration_s(self) -> float:
        """The recorded task time."""
        return round(self.end - self.start, 9)
