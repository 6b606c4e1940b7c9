"""Speculative calls: start the read-only calls the model is likely to write next, verified
before use.

A tool decorated with ``follow_up=fn`` says what an agent usually calls after it:
``fn(args, result)`` returns :class:`Prediction` s (for example: fetch the top results of a
search). When such a call's early execution has its result, the scheduler's
:class:`Speculation` starts the predicted calls, each one run of the predicted tool's body
(for an ``items=`` tool, one item), held apart from everything else. Only tools that are
``read_only=True`` (or an MCP tool whose annotations say ``readOnlyHint``), never
``side_effects=True``, bound to the request that made the prediction and not needing approval
there, are ever started.

A held run belongs to the call whose result predicted it. The next request whose history
carries that call's result (its tool message) adopts it: when one of that request's calls runs
the body of the *same tool object* on *equal arguments* (as the tool sees them), it gets the held
run's result instead of running the body again: the body runs once. Nothing else ever receives a
held result: a prediction that the model does not write is cancelled once the adopting request's
early work is done (or after ``hold_s`` when no request adopts it) and counted as a miss, with the
tool seconds it spent as waste.

Budgets: ``max_per_request`` predictions started per request, ``max_in_flight`` held runs
running in the process, and ``max_wasted_s`` tool seconds wasted per agent run (the chain of
requests that adopt each other's predictions), after which that run speculates no more. Written
here because no library does this: PASTE (arXiv 2603.18897) and pydantic-ai's speculation work
describe the idea, not a component. Example::

    >>> spec = Speculation(max_per_request=4)
    >>> spec.stats()["hits"], spec.max_per_request
    (0, 4)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ResultDropped
from .speculation_learned import Learned
from .store import canonical_args

if TYPE_CHECKING:
    from .policy import Policy
    from .spec import ToolExecutor, ToolSpec

__all__ = ["AgentRunStats", "Prediction", "Speculation", "SpeculativeRun"]

_log = logging.getLogger("conveyor_integrations")
Key = tuple["ToolSpec", str]
_RUN_MEMORY = 16384


@dataclass(frozen=True, slots=True)
class Prediction:
    """One likely next call: the tool's name and the arguments of one run of its body."""

    tool: str
    args: Mapping[str, Any]


@dataclass(slots=True)
class AgentRunStats:
    """What speculation did for one agent run (carried from each request to the next)."""

    started: int = 0
    hits: int = 0
    misses: int = 0
    refused: int = 0
    """Predictions not started: not read-only, not bound, needing approval, or over budget."""
    wasted_s: float = 0.0
    """Tool seconds spent by runs whose result nobody used."""
    learned: Learned | None = field(default=None, repr=False, compare=False)
    """The run's learned transitions (``Speculation(learn=True)``)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable counters."""
        return {"started": self.started, "hits": self.hits, "misses": self.misses,
                "refused": self.refused, "wasted_s": round(self.wasted_s, 6)}


class SpeculativeRun:
    """One held run of a predicted call's body (on the loop of the request that predicted it)."""

    def __init__(self, spec: ToolSpec, key: str, run: AgentRunStats, owner: Speculation,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.spec, self.key, self.run, self._owner, self.loop = spec, key, run, owner, loop
        self.result: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.started = time.perf_counter()
        self.ended: float | None = None
        self.taken = False
        self._task: asyncio.Task[Any] | None = None

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.ended = time.perf_counter()
        self._owner._ended()
        if task.cancelled():
            self._set(None, ResultDropped("speculative run cancelled"))
        elif (exc := task.exception()) is not None:
            self._set(None, exc)
        else:
            self._set(task.result(), None)

    def _set(self, value: Any, exc: BaseException | None) -> None:
        if not self.result.done():
            if exc is None:
                self.result.set_result(value)
            else:
                self.result.set_exception(exc)
        if exc is not None and not self.taken:
            self.result.exception()       # retrieved: nobody will take a failed miss

    async def wait(self) -> Any:
        """Its result, for the call that took it (cancelling the wait cancels the run)."""
        try:
            return await asyncio.wrap_future(self.result)
        except asyncio.CancelledError:
            self.cancel()
            raise

    def cancel(self) -> None:
        """Stop the run (from any thread)."""
        task = self._task
        if task is not None and not task.done():
            try:
                self.loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:        # its loop closed: the task went with it
                self._set(None, ResultDropped("its event loop closed"))

    def miss(self) -> None:
        """Nobody wrote this call: cancel it and count its tool time as wasted."""
        if self.taken:
            return
        self.taken = True              # never handed out after this
        wasted = (self.ended or time.perf_counter()) - self.started
        self._owner._count(self.run, misses=1, wasted_s=wasted)
        self.cancel()


@dataclass
class _Held:
    runs: list[SpeculativeRun] = field(default_factory=list)
    stats: AgentRunStats = field(default_factory=AgentRunStats)
    timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop | None = None


class Speculation:
    """The process's speculative runs and their budgets (one per :class:`~.Scheduler`)."""

    def __init__(self, *, max_per_request: int = 8, max_in_flight: int = 64,
                 max_wasted_s: float = 60.0, hold_s: float = 120.0, learn: bool = False) -> None:
        if min(max_per_request, max_in_flight) < 0 or max_wasted_s < 0 or hold_s <= 0:
            raise ValueError("speculation budgets must be >= 0 (hold_s > 0)")
        self.max_per_request, self.max_in_flight = max_per_request, max_in_flight
        self.max_wasted_s, self.hold_s = max_wasted_s, hold_s
        self.learn = learn
        """Each agent run also learns transitions from its own calls
        (:mod:`~conveyor_integrations.speculation_learned`) and speculates them."""
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}
        self._running = 0
        self.peak_in_flight = 0
        """The most held runs that were running at once."""
        self._totals = AgentRunStats()
        self._runs: OrderedDict[str, AgentRunStats] = OrderedDict()
        """The agent run of each recent call (by call id), so a request that follows it
        continues its counters and its waste budget."""

    # -- making runs ---------------------------------------------------------------------------
    def offer(self, origin: str, predictions: Iterable[Prediction | tuple[str, Mapping[str, Any]]],
              *, stats: AgentRunStats, policy: Policy, budget: int,
              context: contextvars.Context, loop: asyncio.AbstractEventLoop, pool: Executor,
              executor: Callable[[ToolSpec], ToolExecutor | None]) -> int:
        """Start what may be started of ``predictions`` (made from call ``origin``'s result), at
        most ``budget`` of them; held under ``origin``. Returns how many started. On ``loop``."""
        from .spec import ToolSpec

        started: list[SpeculativeRun] = []
        seen: set[tuple[int, str]] = set()
        for p in predictions:
            tool, args = (p.tool, p.args) if isinstance(p, Prediction) else p
            start = policy.decide(tool)
            spec = None if start is None else start.spec
            if (not isinstance(spec, ToolSpec) or not spec.read_only or spec.side_effects
                    or policy.requires_approval(tool) or not isinstance(args, Mapping)):
                self._count(stats, refused=1)
                continue
            body_args = spec.tool_args(args)
            key = canonical_args(body_args)
            if (id(spec), key) in seen:
                continue
            if len(started) >= budget or not self._room(stats):
                self._count(stats, refused=1)
                continue
            seen.add((id(spec), key))
            run = SpeculativeRun(spec, key, stats, self, loop)
            run._task = loop.create_task(_body(spec, body_args, loop, pool, executor(spec)),
                                         context=context.copy())
            run._task.add_done_callback(run._done)
            started.append(run)
        if started:
            with self._lock:
                held = self._held.setdefault(origin, _Held(stats=stats, loop=loop))
                held.runs.extend(started)
                if held.timer is None:
                    held.timer = loop.call_later(self.hold_s, self._expire, origin)
            self._count(stats, started=len(started))
        return len(started)

    def _room(self, stats: AgentRunStats) -> bool:
        with self._lock:
            if self._running >= self.max_in_flight or stats.wasted_s >= self.max_wasted_s:
                return False
            self._running += 1
            self.peak_in_flight = max(self.peak_in_flight, self._running)
            return True

    def _ended(self) -> None:
        with self._lock:
            self._running -= 1

    def _count(self, stats: AgentRunStats, *, started: int = 0, hits: int = 0,
               misses: int = 0, refused: int = 0, wasted_s: float = 0.0) -> None:
        with self._lock:
            for s in (stats, self._totals):
                s.started += started
                s.hits += hits
                s.misses += misses
                s.refused += refused
                s.wasted_s += wasted_s

    def _expire(self, origin: str) -> None:
        with self._lock:
            held = self._held.pop(origin, None)
        for run in held.runs if held is not None else ():
            run.miss()

    # -- using them ----------------------------------------------------------------------------
    def adopt(self, follows: Iterable[str]) -> tuple[AgentRunStats | None,
                                                    dict[Key, SpeculativeRun]]:
        """The held runs predicted by the calls ``follows`` (the call ids of the tool results in
        a new request's history), now the request's own; and the agent run they belong to."""
        stats: AgentRunStats | None = None
        runs: dict[Key, SpeculativeRun] = {}
        follows = list(follows)
        with self._lock:
            found = [h for h in (self._held.pop(c, None) for c in follows) if h is not None]
            stats = next((s for s in map(self._runs.get, follows) if s is not None), None)
        for held in found:
            _cancel_timer(held)            # (a late one finds nothing held: harmless)
            stats = stats or held.stats
            for run in held.runs:
                if (run.spec, run.key) in runs:
                    run.miss()           # the same call predicted twice: one of them is enough
                else:
                    runs[(run.spec, run.key)] = run
        return stats, runs

    def remember(self, call_ids: Iterable[str], stats: AgentRunStats) -> None:
        """The calls of a request belong to the agent run ``stats`` counts (the most recent
        ``_RUN_MEMORY`` calls are remembered)."""
        with self._lock:
            for c in call_ids:
                self._runs[c] = stats
                self._runs.move_to_end(c)
            while len(self._runs) > _RUN_MEMORY:
                self._runs.popitem(last=False)

    def hit(self, run: SpeculativeRun) -> None:
        """``run`` was taken by a call the model wrote."""
        run.taken = True
        self._count(run.run, hits=1)

    def stats(self) -> dict[str, Any]:
        """Process-wide counters since the scheduler began, and the held runs now."""
        with self._lock:
            held = sum(len(h.runs) for h in self._held.values())
            out = self._totals.as_dict()
            running = self._running
        return {**out, "held": held, "running": running, "peak_in_flight": self.peak_in_flight}

    def close(self) -> None:
        """Cancel every held run (the scheduler is closing)."""
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for h in held:
            _cancel_timer(h)
            for run in h.runs:
                run.miss()


def _cancel_timer(held: _Held) -> None:
    """Cancel the expiry of ``held`` on its loop, from any thread."""
    if held.timer is not None and held.loop is not None:
        try:
            held.loop.call_soon_threadsafe(held.timer.cancel)
        except RuntimeError:       # its loop closed: the timer went with it
            pass


async def _body(spec: ToolSpec, args: dict[str, Any], loop: asyncio.AbstractEventLoop,
                pool: Executor, executor: ToolExecutor | None) -> Any:
    """One run of ``spec``'s body where its early work runs: its executor, this loop (async), or
    the scheduler's pool."""
    if executor is not None:
        return await executor.run(spec, args)
    if spec.is_async:
        return await spec.run(args)
    return await loop.run_in_executor(pool, spec.run, args)
