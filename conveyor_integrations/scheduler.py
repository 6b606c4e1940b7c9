"""Overlaps tool work with decoding, and hands each result out exactly once.

The scheduler holds the :class:`~conveyor_integrations.store.ResultStore`, a bounded thread pool
for synchronous tool bodies, and a loop of its own on a daemon thread, for streams driven from a
thread that has no loop (sync ``invoke``). A stream driven from an event loop keeps its early
executions on that loop, so async tools find the caller's resources (an MCP session, a client)
where they live. A framework that invokes the tool later claims the stored result by call id
(LangChain) or by tool name and arguments (LlamaIndex), always as the tool object it is: a result
is handed only to the tool that started it. The scheduler keeps no registry of tools by name:
what a request may start is what its agent bound (:mod:`~conveyor_integrations.policy`).
Example::

    >>> sched = Scheduler()
    >>> sched.claim(call_id="call_unknown")      # nothing ran early: the caller runs the tool
    (False, None)
    >>> sched.close()
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Collection, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .early_run import EarlyRun
from .errors import EarlyAbort, RunWhenInvoked
from .observers import Observer
from .policy import ApprovalRequired, BoundTools, CompleteCallDispatch, HoldSideEffects, Policy
from .session import RequestSession
from .spec import ToolExecutor, ToolSpec
from .speculation import Speculation
from .store import SHARED, ResultStore
from .timings import CallTiming

__all__ = ["Scheduler", "default_scheduler", "set_default_scheduler"]

T = TypeVar("T")
_log = logging.getLogger("conveyor_integrations")


class Scheduler:
    """Runner of early executions and store of their results.

    ``max_threads`` bounds the pool for synchronous tools; ``claim_timeout`` is how long a
    finished-or-running execution waits to be claimed before it is cancelled and dropped.
    ``executor`` (e.g. :class:`~conveyor_integrations.executors.RayExecutor`) runs the work of
    every tool with a synchronous body elsewhere, unless the tool names its own; async tools stay
    on the loop that holds their resources. Bound tools are checked against it when a session
    starts. ``speculation`` holds the budgets of speculative calls
    (:class:`~conveyor_integrations.speculation.Speculation`); only tools that declare
    ``follow_up=`` and ``read_only=True`` ever use it.
    """

    def __init__(self, *, max_threads: int = 16, claim_timeout: float = 300.0,
                 store: ResultStore | None = None,
                 executor: ToolExecutor | None = None,
                 speculation: Speculation | None = None) -> None:
        self.store = store if store is not None else SHARED
        self.claim_timeout = claim_timeout
        """Seconds an unclaimed result is kept."""
        self._max_threads = max_threads
        self.executor = executor
        """Where tools with synchronous bodies run (None: here)."""
        self.speculation = speculation if speculation is not None else Speculation()
        """The speculative runs of tools that declare ``follow_up=`` and their budgets."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    # -- sessions ----------------------------------------------------------------------------
    def session(
        self,
        request_id: str | None = None,
        *,
        tools: Iterable[Any] | BoundTools = (),
        approval_required: Collection[str] = (),
        run_side_effects: bool = False,
        complete_call: bool = False,
        policy: Policy | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        on_abort: Callable[[str, EarlyAbort], None] | None = None,
        observers: Iterable[Observer] = (),
        follows: Iterable[str] = (),
    ) -> RequestSession:
        """Start driving one model stream: feed it the parser's events.

        ``tools`` are the tool objects bound to the request (only decorated ones among them
        start early); ``approval_required`` names tools a human approves (never started early);
        ``run_side_effects`` lets ``side_effects=True`` tools start on their complete call;
        ``complete_call`` starts every tool on its complete call only (eager dispatch).
        ``policy`` replaces all of these. The session runs on ``loop``: by default the running
        loop, or the scheduler's own when there is none. ``on_abort(call_id, exc)`` is called
        (on that loop) when an execution raises ``EarlyAbort``. ``observers`` watch this
        request's executions beside those added with :func:`~.observers.add_observer`.
        ``follows`` are the call ids whose results are in the request's history: the
        speculative runs their results predicted become this request's to take.
        """
        if policy is None:
            policy = tools if isinstance(tools, BoundTools) else BoundTools(tools)
            if not run_side_effects:
                policy = HoldSideEffects(policy)
            if approval_required:
                policy = ApprovalRequired(policy, frozenset(approval_required))
            if complete_call:
                policy = CompleteCallDispatch(policy)
        if self.executor is not None:
            for spec in _bound_specs(policy):
                if spec.executor is None and not spec.is_async:
                    self.executor.check(spec)         # binding time: a clear error now
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = self.loop
        return RequestSession(self.store, policy, loop=loop, pool=self.pool,
                              request_id=request_id, owner=self,
                              claim_timeout=self.claim_timeout, on_abort=on_abort,
                              observers=observers, executor=self.executor,
                              speculation=self.speculation, follows=follows)

    # -- the loop and the pool ---------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The scheduler's own event loop (started on first use)."""
        loop = self._loop
        if loop is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("scheduler is closed")
                if self._loop is None:
                    ready = threading.Event()
                    new_loop = asyncio.new_event_loop()

                    def run() -> None:
                        asyncio.set_event_loop(new_loop)
                        new_loop.call_soon(ready.set)
                        new_loop.run_forever()

                    self._thread = threading.Thread(target=run, name="conveyor-scheduler",
                                                    daemon=True)
                    self._thread.start()
                    ready.wait()
                    self._loop = new_loop
                loop = self._loop
        return loop

    @property
    def pool(self) -> ThreadPoolExecutor:
        """The bounded pool that runs synchronous tool bodies."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._max_threads, "conveyor-tool")
        return self._pool

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the scheduler's loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    # -- claims ------------------------------------------------------------------------------
    def _take(self, call_id: str | None, name: str | None, args: Any,
              spec: ToolSpec | None) -> EarlyRun | None:
        if call_id is None and spec is not None and isinstance(args, dict):
            args = spec.tool_args(args)           # the key the call was stored under
        ex = self.store.take(call_id, name=name, args=args, spec=spec)
        if ex is not None and ex.differs(args):
            ex.drop_soon("the framework invoked the tool with other arguments")
            return None
        if ex is not None:
            ex.note("claim")
        return ex

    def claim(self, call_id: str | None = None, *, name: str | None = None, args: Any = None,
              spec: ToolSpec | None = None) -> tuple[bool, Any]:
        """Take the early result of a call, blocking: ``(True, result)`` or ``(False, None)``.

        ``(False, None)`` means "run the tool yourself": nothing ran early, it ran from another
        tool object than ``spec``'s, or the arguments given differ from those the call was
        decoded with (its early work is then cancelled). Raises what the tool raised
        (``EarlyAbort`` included) and :class:`~conveyor_integrations.errors.AlreadyClaimed` on a
        second claim of one call id.
        """
        ex = self._take(call_id, name, args, spec)
        if ex is None:
            return False, None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is ex.loop and not ex.result.done():
            raise RuntimeError(f"claim() of {ex.call_id!r} would block the loop its execution "
                               "runs on; use aclaim()")
        return _outcome(ex)

    async def aclaim(self, call_id: str | None = None, *, name: str | None = None,
                     args: Any = None, spec: ToolSpec | None = None) -> tuple[bool, Any]:
        """Async form of :meth:`claim`, usable on any event loop."""
        ex = self._take(call_id, name, args, spec)
        if ex is None:
            return False, None
        waited = asyncio.wrap_future(ex.result)
        await asyncio.wait([waited])
        if not waited.cancelled():
            waited.exception()        # read here, or asyncio logs "exception never retrieved"
        return _outcome(ex)

    def timing(self, call_id: str) -> CallTiming | None:
        """The final timings of a call whose early result was handed out (the recent calls),
        or None. The snapshot in a message's metadata is taken when decoding ends; this one is
        complete once the claimer has the result."""
        return self.store.claimed_timing(call_id)

    def release(self, call_id: str, reason: str = "released") -> bool:
        """Drop the unclaimed execution of ``call_id`` (cancel its work); False if there is none.

        For adapters that know a call will never be invoked (e.g. parallel calls turned off)."""
        return self.store.release(call_id, reason)

    def aborted(self, call_id: str | None) -> bool:
        """The early execution of ``call_id`` stopped decoding with ``EarlyAbort`` (unclaimed)."""
        ex = self.store.get(call_id)
        return ex is not None and ex.aborted

    def pending(self) -> int:
        """How many executions wait to be claimed (started, not yet claimed nor dropped)."""
        return self.store.pending(self)

    # -- shutdown ----------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel every pending execution and stop the loop thread and the pool."""
        with self._lock:
            self._closed = True
            loop, thread, pool = self._loop, self._thread, self._pool
        self.speculation.close()
        held = self.store.drain(self)
        for ex in held:
            if ex.loop is not loop:
                ex.drop_soon("scheduler closed")
        if loop is not None and thread is not None and thread.is_alive():
            mine = [ex for ex in held if ex.loop is loop]
            fut = asyncio.run_coroutine_threadsafe(_shutdown(mine), loop)
            try:
                fut.result(timeout=15)
            except Exception:  # noqa: BLE001 - shutting down; the loop stops next
                _log.warning("scheduler shutdown did not finish cleanly", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _bound_specs(policy: Policy) -> list[ToolSpec]:
    """The specs a policy (through its wrappers) lets start, where it says."""
    while not isinstance(policy, BoundTools):
        inner = getattr(policy, "inner", None)
        if inner is None:
            return []           # a user's own policy: its specs are checked when they start
        policy = inner
    return list(policy.specs.values())


def _outcome(ex: EarlyRun) -> tuple[bool, Any]:
    try:
        return True, ex.result.result()
    except RunWhenInvoked:
        return False, None


async def _shutdown(executions: list[EarlyRun]) -> None:
    """Drop the pending executions, then cancel and reap every task left on the loop."""
    await asyncio.gather(*(ex.drop("scheduler closed") for ex in executions),
                         return_exceptions=True)
    for _ in range(5):  # cancelling can start cleanup tasks; reap those too
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not tasks:
            return
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=5)


_default: Scheduler | None = None
_default_lock = threading.Lock()


def default_scheduler() -> Scheduler:
    """The process-wide scheduler that models and decorated tools use when given none."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Scheduler()
                atexit.register(_default.close)
    return _default


def set_default_scheduler(scheduler: Scheduler | None) -> Scheduler | None:
    """Replace the process-wide scheduler; returns the previous one.

    Models and tools look the default up when they run, not when they are made, so tools
    decorated before the change start early under the new one. ``None`` forgets it: the next
    :func:`default_scheduler` call makes a fresh one.
    """
    global _default
    with _default_lock:
        previous, _default = _default, scheduler
    return previous
