"""One request's side of speculation: the held runs it adopted, and the predictions it makes.

A :class:`RequestSpeculation` is made with each :class:`~.session.RequestSession` of a scheduler
that speculates. It adopts the held runs that the request's history predicted
(:meth:`~.speculation.Speculation.adopt`), hands each to the first body run of the same tool
object on equal arguments, cancels those left once the request's early work is done, and starts
the predictions of its own calls' results. Internal.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from .speculation import AgentRunStats, Speculation, SpeculativeRun
from .speculation_learned import Learned
from .store import canonical_args

if TYPE_CHECKING:
    import asyncio

    from .policy import Policy
    from .spec import ToolExecutor, ToolSpec

__all__ = ["RequestSpeculation"]

_log = logging.getLogger("conveyor_integrations")


class RequestSpeculation:
    """The held runs one request may take, and its budget of new predictions."""

    def __init__(self, speculation: Speculation, follows: Iterable[str]) -> None:
        self.speculation = speculation
        stats, self._held = speculation.adopt(follows)
        self.stats = stats or AgentRunStats(learned=Learned() if speculation.learn else None)
        """The agent run's counters (this request and the ones it follows)."""
        self._offered = 0
        self._lock = threading.Lock()

    @property
    def holds(self) -> bool:
        """It adopted held runs (some call of the request may take one)."""
        return bool(self._held)

    def take(self, spec: ToolSpec, args: dict[str, Any]) -> SpeculativeRun | None:
        """The held run of ``spec``'s body on ``args`` (as the tool sees them), now taken."""
        with self._lock:
            run = self._held.pop((spec, canonical_args(spec.tool_args(args))), None)
        if run is None or run.taken:
            return None
        self.speculation.hit(run)
        return run

    def remember(self, call_ids: Iterable[str]) -> None:
        """The request's calls belong to this agent run (a request following them continues
        it)."""
        self.speculation.remember(call_ids, self.stats)

    def miss_left(self) -> None:
        """Cancel every held run not taken (counted as misses)."""
        with self._lock:
            left, self._held = list(self._held.values()), {}
        for run in left:
            run.miss()

    def miss_left_after(self, results: Iterable[concurrent.futures.Future[Any]]) -> None:
        """:meth:`miss_left` once every one of ``results`` (the request's early runs) is done:
        by then each body those runs will run has asked for its held run."""
        left = [r for r in results if not r.done()]
        if not left:
            self.miss_left()
            return
        pending = [len(left)]

        def one_done(_: object) -> None:
            with self._lock:
                pending[0] -= 1
                last = pending[0] == 0
            if last:
                self.miss_left()

        for r in left:
            r.add_done_callback(one_done)

    @property
    def wants_results(self) -> bool:
        """The agent run learns from every result (not only from tools with a follow-up)."""
        return self.stats.learned is not None

    def saw_call(self, spec: ToolSpec, args: dict[str, Any]) -> None:
        """The model wrote a call of ``spec`` (learned runs learn from read-only ones)."""
        learned = self.stats.learned
        if learned is not None and spec.read_only:
            learned.saw_call(spec, args)

    def predict(self, spec: ToolSpec, call_id: str, args: dict[str, Any], value: Any, *,
                policy: Policy, context: contextvars.Context, loop: asyncio.AbstractEventLoop,
                pool: Executor, executor: Callable[[ToolSpec], ToolExecutor | None]) -> None:
        """Start what ``spec``'s follow-up and the run's learned transitions predict after a
        result of call ``call_id`` (read-only tools of ``policy`` only), within the request's
        budget."""
        learned = self.stats.learned
        predictions: list[Any] = [] if learned is None else learned.predict(spec, value)
        if learned is not None:
            learned.saw_result(spec, value)
        budget = self.speculation.max_per_request - self._offered
        if budget <= 0:
            return
        if spec.follow_up is not None:
            try:
                predictions = list(spec.follow_up(dict(args), value) or ()) + predictions
            except Exception:  # noqa: BLE001 - a broken predictor costs a speculation only
                _log.warning("follow_up of %r raised; it predicts nothing", spec.name,
                             exc_info=True)
        if not predictions:
            return
        self._offered += self.speculation.offer(
            call_id, predictions, stats=self.stats, policy=policy, budget=budget,
            context=context, loop=loop, pool=pool, executor=executor)
