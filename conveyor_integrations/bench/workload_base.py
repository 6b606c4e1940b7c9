"""What a benchmark workload is: transcripts, the same tools three ways, and its pieces.

A :class:`Workload` gives its tools as :class:`ToolPart` s (a coroutine and its strategy), and
for each mode the LangChain (or LlamaIndex) tools that a LangGraph ``ToolNode`` (or an agent) runs:

- ``sequential``: plain tools, nothing starts before the message is decoded;
- ``complete_call``: the tools decorated as for ``partial``, in a session with
  ``complete_call=True`` (eager dispatch): each starts as soon as its whole call is decoded;
- ``partial``: the same tools decorated with their partial-execution strategy.

Every tool records what it did into a :class:`Trace` (one span per piece of work), and after a
partial run :meth:`Workload.pieces` pairs the pieces of tool work with the moments the parser
made them final, from which :func:`ideal_latency` computes the pipeline bound. Example::

    >>> ideal_latency([Piece("a", final_at=1.0, start=1.0, end=2.0),
    ...                Piece("b", final_at=1.5, start=2.0, end=2.5, deps=(0,))], decode_end=2.0)
    2.5
"""

from __future__ import annotations

import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import Event

__all__ = ["Env", "Mark", "Piece", "Pieces", "StampingParser", "ToolPart", "Trace", "Workload",
           "ideal_latency", "marks_of"]

Mark = tuple[float, Event]
"""``(perf_counter when the parser emitted it, event)``."""

Pieces = tuple[list["Piece"], int | None, bool]
"""A partial run's pieces in order, the index of the one that aborted decoding (or None), and
whether they are complete: every piece the parser emitted ran early, once, and no part of the
call ran again on the complete arguments (otherwise no ideal is computed for the run)."""


class StampingParser:
    """A parser that hands each batch of events, with the moment it emitted them (before the
    session routes them), to ``note(now, events)``; otherwise the parser itself."""

    def __init__(self, parser: Any, note: Callable[[float, list[Event]], None]) -> None:
        self._parser, self._note = parser, note

    def _stamp(self, events: list[Event]) -> list[Event]:
        if events:
            self._note(time.perf_counter(), events)
        return events

    def feed(self, delta: Any) -> list[Event]:
        return self._stamp(self._parser.feed(delta))

    def close(self) -> list[Event]:
        return self._stamp(self._parser.close())


@dataclass
class Env:
    """What the tools of a benchmark run share: the search server, the database, a folder."""

    search_url: str
    db_path: Path
    workdir: Path


@dataclass(slots=True)
class Piece:
    """One piece of tool work: final at ``final_at``, run from ``start`` to ``end``."""

    label: str
    final_at: float
    start: float
    end: float
    deps: tuple[int, ...] = ()
    """Indices (in the same list) of the pieces it waits for."""

    @property
    def duration(self) -> float:
        """The measured tool time of this piece."""
        return max(0.0, self.end - self.start)


def ideal_latency(pieces: Sequence[Piece], decode_end: float, *, abort_at: int | None = None
                  ) -> float:
    """The pipeline bound: ``f_i = max(d_i, f_deps) + t_i``; ``max(f_n, D)``.

    With ``abort_at``, the time to the failing piece plus its check (decoding stops there).
    All times in the same clock; pieces with no ``deps`` run concurrently.
    """
    finish: list[float] = []
    for p in pieces:
        ready = max([p.final_at] + [finish[j] for j in p.deps if j < len(finish)])
        finish.append(ready + p.duration)
    if abort_at is not None:
        return finish[abort_at]
    return max([decode_end] + finish)


class Trace:
    """The spans the tools of one run recorded, and the executions the scheduler made."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []
        self.executions: list[Any] = []

    def reset(self) -> None:
        """Forget the previous run."""
        self.spans.clear()
        self.executions.clear()

    def record(self, label: str, start: float) -> None:
        """A piece of work labelled ``label`` ran from ``start`` until now."""
        self.spans.append((label, start, time.perf_counter()))

    def traced(self, label: Callable[..., str],
               fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """``fn`` recording one span per call, labelled ``label(*args, **kwargs)``."""

        @functools.wraps(fn)      # keeps the signature: plans map positional arguments by it
        async def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.record(label(*args, **kwargs), t0)

        return run

    def made(self, factory: Callable[[], Any]) -> Callable[[], Any]:
        """``factory`` (of partial executions) keeping each execution it makes."""

        def make() -> Any:
            ex = factory()
            self.executions.append(ex)
            return ex

        return make


def marks_of(marks: Iterable[Mark], kind: type, path: tuple[Any, ...] | None = None
             ) -> list[tuple[float, Any]]:
    """The marks of one event type (and top-level path), in order."""
    return [(t, ev) for t, ev in marks if isinstance(ev, kind)
            and (path is None or getattr(ev, "path", None) == path)]


@dataclass(frozen=True)
class ToolPart:
    """One tool of a workload, before it is made a framework's tool: its coroutine and the
    ``partial_tool`` keywords it is decorated with (``decorated=False``: never decorated)."""

    name: str
    description: str
    fn: Callable[..., Awaitable[Any]]
    strategy: dict[str, Any] = field(default_factory=dict)
    decorated: bool = True
    args_schema: Any = None
    """A JSON schema for a LangChain tool whose function takes ``**fields``."""

    def tool(self, mode: str, sched: Any, framework: str = "langchain") -> Any:
        """The tool as ``mode`` runs it (plain for ``sequential``; the decorated function
        otherwise, whose claim the framework tool calls), as a LangChain ``StructuredTool``
        or a LlamaIndex ``FunctionTool``."""
        from ..partial import partial_tool

        fn = self.fn
        if mode != "sequential" and self.decorated:
            fn.__name__ = self.name     # the decorated function's spec is named after it
            fn = partial_tool(fn, scheduler=sched, **self.strategy)
        if framework == "llamaindex":
            from llama_index.core.tools import FunctionTool

            return FunctionTool.from_defaults(async_fn=fn, name=self.name,
                                              description=self.description)
        from langchain_core.tools import StructuredTool

        return StructuredTool.from_function(coroutine=fn, name=self.name,
                                            description=self.description,
                                            args_schema=self.args_schema)


@dataclass
class Workload(ABC):
    """Transcripts and tools of one workload; subclasses give :meth:`parts` and :meth:`pieces`."""

    name: str
    title: str
    transcripts: dict[str, str]
    note: str = ""
    """What a reader should know (what is simulated, why there is nothing to gain...)."""
    setup: dict[str, Any] = field(default_factory=dict)

    @abstractmethod
    def parts(self, env: Env, trace: Trace) -> list[ToolPart]:
        """The workload's tools, recording their work into ``trace``."""

    def tools(self, env: Env, mode: str, sched: Any, trace: Trace,
              framework: str = "langchain") -> list[Any]:
        """The framework's tools for ``mode``, claiming from ``sched`` when decorated."""
        return [p.tool(mode, sched, framework) for p in self.parts(env, trace)]

    @abstractmethod
    def pieces(self, trace: Trace, marks: list[Mark]) -> Pieces:
        """The partial run's pieces (see :data:`Pieces`)."""
