"""One early run of one tool call (an :class:`EarlyRun`), on the loop that drives its stream.

Events for the call are queued in decoding order and one task feeds them to the tool's
``PartialExecution``, so ``feed`` is never re-entered and never reordered. Each step is bounded by
the tool's ``timeout``. Async tool bodies run on the execution's loop (the caller's, where its
resources live); synchronous ones on the scheduler's thread pool. A tool's executor
(:class:`~.spec.ToolExecutor`) moves its bodies, or for streamed and custom tools its whole execution,
elsewhere (a Ray cluster); events still go to it in order from here. The result lands in a
``concurrent.futures.Future`` that any thread may wait on. The execution knows its owner only
through the :class:`Hooks` it is given. Internal: users meet it through ``Scheduler.claim``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import EarlyAbort, ResultDropped, ToolTimeout
from .events import CallDone, CallEvent, CallMalformed, CallStarted, FieldDone, ItemDone, TextChunk
from .loop_inbox import inbox_for
from .observers import ExecutionEvent, Observe
from .spec import PartialExecution, ToolExecutor, ToolSpec
from .strategies import CompleteCall
from .timings import CallTiming

__all__ = ["EarlyRun", "HeldRun", "Hooks", "executor_of", "remote_execution_of"]

_log = logging.getLogger("conveyor_integrations")


class HeldRun(Protocol):
    """A speculative run of a body, started before its call was written (see
    :mod:`~conveyor_integrations.speculation`)."""

    started: float

    async def wait(self) -> Any:
        """Its result (or its error)."""
        ...


@dataclass(frozen=True, slots=True)
class Hooks:
    """What an execution tells its owner (called on the execution's loop)."""

    on_abort: Callable[[EarlyRun, EarlyAbort], None]
    """It raised ``EarlyAbort``: stop decoding."""
    on_waiting: Callable[[EarlyRun], None]
    """Its call is complete (or aborted): it now waits to be claimed."""
    speculated: Callable[[ToolSpec, dict[str, Any]], HeldRun | None] | None = None
    """A held speculative run of this body on these arguments, taken (or None)."""
    on_result: Callable[[EarlyRun, Any], None] | None = None
    """It has its result (before anyone can claim it): predict what comes next."""


class EarlyRun:
    """State of one call's early execution (lives on ``loop``)."""

    def __init__(self, spec: ToolSpec, call_id: str, timing: CallTiming, *,
                 loop: asyncio.AbstractEventLoop, pool: Executor, hooks: Hooks,
                 complete_only: bool = False, owner: object = None,
                 claim_timeout: float = 300.0,
                 context: contextvars.Context | None = None,
                 observe: Observe | None = None, request_id: str = "",
                 executor: ToolExecutor | None = None) -> None:
        self.spec, self.call_id, self.timing, self.loop = spec, call_id, timing, loop
        self._pool, self._hooks = pool, hooks
        self.owner = owner
        """The scheduler that started it (closing that scheduler drops it)."""
        self.claim_timeout = claim_timeout
        """Seconds it waits to be claimed once its call is complete."""
        self.deadline: float | None = None
        """``time.monotonic()`` after which it is not claimable (set by the store)."""
        self._context = context
        self.result: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.final_args: dict[str, Any] | None = None
        """The complete call's arguments as the tool sees them (``spec.tool_args``)."""
        self.aborted = False
        self.dropped = False
        self._queue: deque[CallEvent] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._observe, self._request_id = observe, request_id
        self._text_chunks = 0
        runner = _Runner(self)
        # the tool's own executor, else the scheduler's for a synchronous body (an async body
        # stays on this loop, with the caller's resources)
        self.executor = executor_of(spec, executor)
        remote = remote_execution_of(spec, self.executor, complete_only)
        self._works_from_start = spec.custom or remote is not None
        self.impl = (CompleteCall(runner) if complete_only else remote if remote is not None
                     else spec.make_execution(runner))

    def note(self, kind: str, **detail: Any) -> None:
        """Tell the request's observers (see :mod:`.observers`) that ``kind`` happened."""
        observe = self._observe
        if observe is not None:
            t = self.timing
            observe(ExecutionEvent(kind, time.perf_counter(), self._request_id, self.call_id,
                                   t.name, t.index, detail))

    # -- on the loop -------------------------------------------------------------------------
    def put(self, event: CallEvent) -> None:
        """Queue one event; the first one starts the worker task."""
        if self.dropped or self.aborted:
            return
        if isinstance(event, CallMalformed):
            self._drop_task(f"call malformed: {event.reason}", "malformed")
            return
        if self._task is None:
            # a fresh context: the execution must not inherit the run config (LangChain's
            # callbacks) of the model call whose stream started it; it sees its request's policy
            ctx = contextvars.Context() if self._context is None else self._context.copy()
            self._task = self.loop.create_task(self._work(), context=ctx)
        if isinstance(event, CallDone):
            if self.final_args is None:          # the session sets them when it sees the call
                self.final_args = self.spec.tool_args(event.args)
            self._hooks.on_waiting(self)
        self._queue.append(event)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _run_tool(self, args: dict[str, Any]) -> Any:
        timing = self.timing
        take = self._hooks.speculated
        if take is not None and self.spec.read_only:
            held = take(self.spec, args)
            if held is not None:              # started before the call was written: once
                timing.speculated += 1
                if timing.tool_start is None:
                    timing.tool_start = held.started
                    self.note("tool_start", speculative=True)
                return await held.wait()
        if self.executor is not None:
            if timing.tool_start is None:     # submitted (it may still wait for room there)
                timing.tool_start = time.perf_counter()
                self.note("tool_start")
            return await self.executor.run(self.spec, args)
        if self.spec.is_async:
            if timing.tool_start is None:
                timing.tool_start = time.perf_counter()
                self.note("tool_start")
            return await self.spec.run(args)

        def body() -> Any:
            if timing.tool_start is None:       # stamped when the body really starts
                timing.tool_start = time.perf_counter()
                self.note("tool_start")
            return self.spec.run(args)

        return await self.loop.run_in_executor(self._pool, body)

    async def _step(self, coro: Any) -> Any:
        if self.spec.timeout is None:
            return await coro
        try:
            async with asyncio.timeout(self.spec.timeout):
                return await coro
        except TimeoutError:
            raise ToolTimeout(f"tool {self.spec.name!r} ran past its timeout of "
                              f"{self.spec.timeout} s") from None

    async def _work(self) -> None:
        queue, impl, timing = self._queue, self.impl, self.timing
        try:
            while True:
                while not queue:
                    self._wake = self.loop.create_future()
                    await self._wake
                event = queue.popleft()
                if isinstance(event, CallStarted):
                    if self._works_from_start and timing.tool_start is None:
                        timing.tool_start = time.perf_counter()   # a user's execution works
                        self.note("tool_start")                    # from its start()
                    await self._step(impl.start(event))
                elif isinstance(event, CallDone):
                    assert self.final_args is not None
                    value = await self._step(impl.finish(dict(self.final_args)))
                    timing.tool_end, timing.status = time.perf_counter(), "ok"
                    if self._hooks.on_result is not None:
                        self._hooks.on_result(self, value)    # before a claim can return
                    self._settle(value, None)
                    self._finished("ok")
                    return
                elif not isinstance(event, CallMalformed):
                    await self._step(impl.feed(event))
                    if self._observe is not None:
                        self._fed(event)
        except EarlyAbort as exc:
            self.aborted = True
            timing.status, timing.tool_end = "aborted", time.perf_counter()
            if timing.tool_start is None:
                timing.tool_start = timing.tool_end
            self._settle(None, exc)
            self._finished("aborted")
            self.note("abort", reason=exc.reason)
            self._hooks.on_abort(self, exc)
            self._hooks.on_waiting(self)    # nobody may claim the abort: it expires like a result
            await self._quiet_cancel()
        except asyncio.CancelledError:
            await self._quiet_cancel()
            self._settle(None, ResultDropped(f"execution of {self.call_id!r} was cancelled"))
            raise
        except BaseException as exc:  # noqa: BLE001 - the tool's error is its result
            timing.status, timing.tool_end = "error", time.perf_counter()
            self._settle(None, exc)
            self._finished("error", error=type(exc).__name__)
            await self._quiet_cancel()

    def _fed(self, event: CallEvent) -> None:
        if isinstance(event, TextChunk):
            self._text_chunks += 1
        elif isinstance(event, ItemDone):
            self.note("piece", path=event.path, item=event.i)
        elif isinstance(event, FieldDone):
            self.note("piece", path=event.path)

    def _finished(self, status: str, **detail: Any) -> None:
        if self._observe is not None:
            self.note("finish", status=status, text_chunks=self._text_chunks, **detail)

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
            _log.warning("cancel() of the execution of %r (%s) raised", self.call_id,
                         self.spec.name, exc_info=True)

    async def drop(self, reason: str, *, status: str = "dropped",
                   exc: BaseException | None = None) -> None:
        """Cancel the work, reap it, and make the result a :class:`ResultDropped`."""
        if not self.dropped:
            self.note("cancel", reason=reason, status=status)
        self.dropped = True
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

    def _drop_task(self, reason: str, status: str = "dropped",
                   exc: BaseException | None = None) -> None:
        self.loop.create_task(self.drop(reason, status=status, exc=exc),
                              context=contextvars.Context())

    # -- from any thread ---------------------------------------------------------------------
    def drop_soon(self, reason: str, *, status: str = "dropped",
                  exc: BaseException | None = None) -> None:
        """:meth:`drop` scheduled on the execution's loop, from any thread."""
        try:
            inbox_for(self.loop).post(self._drop_task, reason, status, exc)
        except RuntimeError:     # the loop has closed: its tasks were cancelled with it
            if not self.dropped:
                self.note("cancel", reason=reason, status=status)
            self.dropped = True
            self._settle(None, exc or ResultDropped(reason))

    def differs(self, claim_args: Any) -> bool:
        """The framework invokes the tool with other arguments than the call was decoded with."""
        if claim_args is None or self.final_args is None or not isinstance(claim_args, dict):
            return False
        return self.spec.tool_args(claim_args) != self.final_args


def executor_of(spec: ToolSpec, default: ToolExecutor | None) -> ToolExecutor | None:
    """Where ``spec``'s work runs: its own executor, else ``default`` (a scheduler's) for a
    synchronous body; an async body stays on the caller's loop, with the caller's resources."""
    return spec.executor or (None if spec.is_async else default)


def remote_execution_of(spec: ToolSpec, executor: ToolExecutor | None,
                        complete_only: bool) -> PartialExecution | None:
    """The executor's own execution of one call of ``spec``, for streamed and custom tools
    (statements, lines, plan steps), which keep state between pieces; None otherwise."""
    if executor is None or complete_only or spec.starts_on[0] not in ("stream", "custom"):
        return None
    return executor.execution(spec)


class _Runner:
    """The runner handed to strategies: runs the tool's body, knows the tool's spec."""

    __slots__ = ("_ex", "spec")

    def __init__(self, ex: EarlyRun) -> None:
        self._ex, self.spec = ex, ex.spec

    async def __call__(self, args: dict[str, Any]) -> Any:
        return await self._ex._run_tool(args)

    def restart(self) -> None:
        """The early work was void; the tool runs again on the complete arguments from now."""
        timing = self._ex.timing
        timing.tool_start, timing.reran = None, True
        self._ex.note("rerun")
