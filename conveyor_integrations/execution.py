"""One early execution of one tool call, as the scheduler's loop runs it.

Events for the call are queued in decoding order and one task feeds them to the user's
``PartialExecution``, so ``feed`` is never re-entered and never reordered. Each step is bounded by
the tool's ``timeout``. The result lands in a ``concurrent.futures.Future`` that any thread may
wait on. Internal: users meet it only through ``Scheduler.claim``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from .errors import EarlyAbort, ResultDropped, ToolTimeout
from .events import CallDone, CallEvent, CallMalformed, CallStarted, FieldDone, ItemDone, TextChunk
from .partial import ToolSpec
from .strategies import CompleteCall, EachItem, StartOn, StreamPieces
from .timings import CallTiming

if TYPE_CHECKING:
    from .scheduler import Scheduler
    from .session import RequestSession

__all__ = ["Execution"]

_log = logging.getLogger("conveyor_integrations")
_BUILTIN = (StartOn, StreamPieces, EachItem, CompleteCall)


class Execution:
    """State of one call's early execution (lives on the scheduler's loop)."""

    def __init__(self, sched: Scheduler, session: RequestSession, call_id: str, spec: ToolSpec,
                 timing: CallTiming) -> None:
        self.sched, self.session, self.spec, self.timing = sched, session, spec, timing
        self.call_id, self.name = call_id, spec.name
        self.result: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.args_key: tuple[str, str] | None = None
        self.final_args: dict[str, Any] | None = None
        self.aborted = False
        self.dropped = False
        self._queue: deque[CallEvent] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.claimed = False
        """Set (from the claiming thread) once the result is taken: no expiry timer after that."""
        self.impl = spec.make_execution(_Runner(self))

    # -- called on the scheduler's loop ---------------------------------------------------------
    def put(self, event: CallEvent) -> None:
        """Queue one event (on the loop); the first one starts the worker task."""
        if self.dropped or self.aborted:
            return
        if self._queue is None:
            self._queue = deque()
            self._task = asyncio.get_running_loop().create_task(self._work())
        if isinstance(event, CallMalformed):
            if not self.aborted:
                asyncio.get_running_loop().create_task(
                    self.drop(f"call malformed: {event.reason}", status="malformed"))
            return
        if isinstance(event, CallDone):
            self._arm_expiry(asyncio.get_running_loop())
        self._queue.append(event)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _run_tool(self, args: dict[str, Any]) -> Any:
        if self.timing.tool_start is None:
            self.timing.tool_start = time.perf_counter()
            self.timing.early = self.timing.args_final is None or self.timing.tool_start < (
                self.session.decode_end or float("inf"))
        if self.spec.is_async:
            return await self.spec.run(args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.sched.pool, self.spec.run, args)

    async def _step(self, coro: Any) -> Any:
        if self.spec.timeout is None:
            return await coro
        try:
            async with asyncio.timeout(self.spec.timeout):
                return await coro
        except TimeoutError:
            raise ToolTimeout(f"tool {self.name!r} ran past its timeout of "
                              f"{self.spec.timeout} s") from None

    async def _work(self) -> None:
        queue = self._queue
        assert queue is not None
        impl, timing = self.impl, self.timing
        custom = not isinstance(impl, _BUILTIN)
        loop = asyncio.get_running_loop()
        try:
            while True:
                while not queue:
                    self._wake = loop.create_future()
                    await self._wake
                event = queue.popleft()
                if isinstance(event, CallStarted):
                    if custom and timing.tool_start is None:
                        # a user's execution works from its start(): count it as the tool's
                        timing.tool_start, timing.early = time.perf_counter(), True
                    await self._step(impl.start(event))
                elif isinstance(event, (FieldDone, TextChunk, ItemDone)):
                    await self._step(impl.feed(event))
                elif isinstance(event, CallDone):
                    value = await self._step(impl.finish(dict(event.args)))
                    timing.tool_end = time.perf_counter()
                    timing.status = "ok"
                    self._settle(value, None)
                    return
        except EarlyAbort as exc:
            self.aborted = True
            timing.status, timing.tool_end = "aborted", time.perf_counter()
            if timing.tool_start is None:
                timing.tool_start = timing.tool_end
            timing.early = True
            self._settle(None, exc)
            self.session._on_abort(self, exc)
            self._arm_expiry(loop)   # nobody may claim the abort: it expires like a result
            await self._quiet_cancel()
        except asyncio.CancelledError:
            await self._quiet_cancel()
            self._settle(None, ResultDropped(f"execution of {self.call_id!r} was cancelled"))
            raise
        except BaseException as exc:  # noqa: BLE001 - the tool's error is its result
            timing.status, timing.tool_end = "error", time.perf_counter()
            self._settle(None, exc)
            await self._quiet_cancel()

    def _settle(self, value: Any, exc: BaseException | None) -> None:
        if self.result.done():
            return
        if exc is None:
            self.result.set_result(value)
        else:
            self.result.set_exception(exc)

    async def _quiet_cancel(self) -> None:
        try:
            await asyncio.shield(self.impl.cancel())
        except Exception:  # noqa: BLE001 - cancel errors must not hide the original outcome
            _log.warning("cancel() of the execution of %r (%s) raised", self.call_id, self.name,
                         exc_info=True)

    def _expire(self) -> None:
        if self.sched._discard(self):
            asyncio.get_running_loop().create_task(
                self.drop(f"result of {self.call_id!r} expired unclaimed after "
                          f"{self.sched.claim_timeout} s", status="dropped"))

    async def drop(self, reason: str, *, status: str = "dropped",
                   exc: BaseException | None = None) -> None:
        """Cancel the work, reap it, and make the result a :class:`ResultDropped`."""
        self.dropped = True
        if self._expiry is not None:
            self._expiry.cancel()
        if self.timing.status in ("pending", "ok", "error"):
            self.timing.status = status
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            await self._quiet_cancel()
        self._settle(None, exc or ResultDropped(reason))
        if not self.result.cancelled() and self.result.done():
            self.result.exception()  # mark retrieved: nobody will claim a dropped result

    # -- called by claimers, on any thread -----------------------------------------------------
    def on_claimed(self) -> None:
        """The result is taken: stop the unclaimed-result timer (or keep it from being armed)."""
        self.claimed = True
        self.sched.call_soon(self._cancel_expiry)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _arm_expiry(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the unclaimed-result timer, unless the result is already taken or gone.

        The timer runs in an empty context, so it holds on to no caller's context variables.
        """
        if self._expiry is None and not self.claimed and self.sched.holds(self):
            self._expiry = loop.call_later(self.sched.claim_timeout, self._expire,
                                           context=contextvars.Context())

    def differs(self, claim_args: Any) -> bool:
        """The framework invokes the tool with other arguments than the call was decoded with."""
        if claim_args is None or self.final_args is None:
            return False
        from .scheduler import canonical_args

        return canonical_args(claim_args) != canonical_args(self.final_args)


class _Runner:
    """The runner handed to strategies: runs the tool, records when it started."""

    __slots__ = ("_ex",)

    def __init__(self, ex: Execution) -> None:
        self._ex = ex

    async def __call__(self, args: dict[str, Any]) -> Any:
        return await self._ex._run_tool(args)

    def restart(self) -> None:
        """The early work was void; the tool runs again on the complete arguments from now."""
        timing = self._ex.timing
        timing.tool_start, timing.early, timing.reran = None, False, True
