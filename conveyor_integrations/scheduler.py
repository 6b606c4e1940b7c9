"""Overlaps tool work with decoding, and hands each result out exactly once.

The scheduler owns one event loop on a daemon thread, plus a bounded thread pool for synchronous
tools. Every early execution runs there, whichever loop or thread drives the model's stream and
whichever one later invokes the tool: LangChain calls tools from worker threads, LlamaIndex from
its own loop, and ``ChatConveyor.invoke`` from no loop at all, so results must not be tied to the
caller's loop. Results live in ``concurrent.futures.Future``s, which every thread can wait on.

A stream is driven through a :class:`~conveyor_integrations.session.RequestSession`; a framework
that invokes the tool later claims the stored result by call id (LangChain) or by tool name and
canonical arguments (LlamaIndex). Example::

    >>> sched = Scheduler()
    >>> sched.claim(call_id="call_unknown")      # nothing ran early: the caller runs the tool
    (False, None)
    >>> sched.close()
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import json
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Collection, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import AlreadyClaimed
from .partial import ToolSpec

if TYPE_CHECKING:
    from .execution import Execution
    from .session import RequestSession

__all__ = ["Scheduler", "canonical_args", "default_scheduler", "set_default_scheduler"]

T = TypeVar("T")
_log = logging.getLogger("conveyor_integrations")
_CLAIMED_MEMORY = 65536


def canonical_args(args: Any) -> str:
    """A stable text form of arguments, the key for claims by name and arguments."""
    return json.dumps(args, sort_keys=True, separators=(",", ":"), default=repr, ensure_ascii=False)


class Scheduler:
    """Registry of partial tools, runner of their executions, and store of their results.

    ``max_threads`` bounds the pool for synchronous tools; ``claim_timeout`` is how long a
    finished-or-running execution waits to be claimed before it is cancelled and dropped.
    """

    def __init__(self, *, max_threads: int = 16, claim_timeout: float = 300.0) -> None:
        self.claim_timeout = claim_timeout
        self._max_threads = max_threads
        self._specs: dict[str, ToolSpec] = {}
        self._lock = threading.Lock()
        self._by_id: dict[str, Execution] = {}
        self._by_args: dict[tuple[str, str], deque[Execution]] = {}
        self._claimed: OrderedDict[str, None] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._inbox: deque[Any] = deque()
        self._draining = False

    # -- registration ------------------------------------------------------------------------
    def register(self, spec: ToolSpec) -> None:
        """Register (or replace) the partial tool named ``spec.name``."""
        with self._lock:
            self._specs[spec.name] = spec

    def unregister(self, name: str) -> None:
        """Forget the tool ``name``; calls of it then run only when the framework invokes them."""
        with self._lock:
            self._specs.pop(name, None)

    def spec(self, name: str) -> ToolSpec | None:
        """The registered spec of ``name``, or None."""
        return self._specs.get(name)

    @property
    def tool_names(self) -> frozenset[str]:
        """Names of the registered partial tools."""
        return frozenset(self._specs)

    def parser_streams(self, names: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
        """The ``streams=`` mapping a parser needs: tool -> {field: unit}."""
        specs = self._specs if names is None else {n: s for n in names if (s := self._specs.get(n))}
        return {n: dict(s.streams) for n, s in specs.items() if s.streams}

    # -- sessions ----------------------------------------------------------------------------
    def session(
        self,
        request_id: str | None = None,
        *,
        approval_required: Collection[str] = (),
        tools: Collection[str] | None = None,
        run_side_effects: bool = False,
    ) -> RequestSession:
        """Start driving one model stream: feed it the parser's events.

        ``approval_required`` names tools that must wait for a human (never run early);
        ``tools`` limits early execution to the tools bound to this request;
        ``run_side_effects`` lets ``side_effects=True`` tools start on their complete call.
        """
        from .session import RequestSession

        return RequestSession(self, request_id, approval_required=approval_required, tools=tools,
                              run_side_effects=run_side_effects)

    # -- the loop ----------------------------------------------------------------------------
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
        """The bounded pool that runs synchronous tools."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._max_threads, "conveyor-tool")
        return self._pool

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the scheduler's loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, fn: Any, *args: Any) -> None:
        """Call ``fn(*args)`` on the scheduler's loop, from any thread, without waiting.

        Calls are queued in order and the loop is woken once per drain, not once per call.
        """
        loop = self.loop
        with self._lock:
            self._inbox.append((fn, args))
            if self._draining:
                return
            self._draining = True
        # an empty context: tasks started by the drain (early executions) must not inherit the
        # context variables (e.g. LangChain's run config) of whichever request woke the loop
        loop.call_soon_threadsafe(self._drain, context=contextvars.Context())

    def _drain(self) -> None:
        inbox = self._inbox
        while True:
            with self._lock:
                if not inbox:
                    self._draining = False
                    return
                fn, args = inbox.popleft()
            fn(*args)

    # -- the registry ------------------------------------------------------------------------
    def _add(self, ex: Execution) -> None:
        with self._lock:
            self._by_id[ex.call_id] = ex

    def _index_args(self, ex: Execution, args: dict[str, Any]) -> None:
        key = (ex.name, canonical_args(args))
        with self._lock:
            if self._by_id.get(ex.call_id) is ex:
                ex.args_key = key
                self._by_args.setdefault(key, deque()).append(ex)

    def _discard(self, ex: Execution) -> bool:
        """Remove ``ex`` from the registry; False when it was already gone (claimed)."""
        with self._lock:
            if self._by_id.get(ex.call_id) is not ex:
                return False
            del self._by_id[ex.call_id]
            self._unindex(ex)
            return True

    def _unindex(self, ex: Execution) -> None:
        if ex.args_key is not None:
            q = self._by_args.get(ex.args_key)
            if q is not None:
                try:
                    q.remove(ex)
                except ValueError:
                    pass
                if not q:
                    del self._by_args[ex.args_key]

    def _take(self, call_id: str | None, name: str | None, args: Any) -> Execution | None:
        with self._lock:
            if call_id is not None:
                ex = self._by_id.pop(call_id, None)
                if ex is None:
                    if call_id in self._claimed:
                        raise AlreadyClaimed(f"the result of tool call {call_id!r} was already "
                                             "handed out; each result is handed out once")
                    return None
                self._unindex(ex)
            else:
                q = self._by_args.get((name or "", canonical_args(args)))
                if not q:
                    return None
                ex = q.popleft()
                if not q:
                    del self._by_args[ex.args_key]  # type: ignore[arg-type]
                del self._by_id[ex.call_id]
            self._claimed[ex.call_id] = None
            while len(self._claimed) > _CLAIMED_MEMORY:
                self._claimed.popitem(last=False)
            return ex

    def release(self, call_id: str, reason: str = "released") -> bool:
        """Drop the unclaimed execution of ``call_id`` (cancel its work); False if there is none.

        For adapters that know a call will never be invoked (e.g. parallel calls turned off).
        """
        with self._lock:
            ex = self._by_id.get(call_id)
        if ex is None or not self._discard(ex):
            return False
        self.call_soon(_drop_soon_reason, ex, reason)
        return True

    def holds(self, ex: Execution) -> bool:
        """``ex`` is still in the registry (neither claimed nor dropped)."""
        with self._lock:
            return self._by_id.get(ex.call_id) is ex

    def aborted(self, call_id: str | None) -> bool:
        """The early execution of ``call_id`` stopped decoding with ``EarlyAbort`` (unclaimed)."""
        with self._lock:
            ex = self._by_id.get(call_id) if call_id is not None else None
            return ex is not None and ex.aborted

    def pending(self) -> int:
        """How many executions wait in the registry (started, not yet claimed nor dropped)."""
        with self._lock:
            return len(self._by_id)

    # -- claims ------------------------------------------------------------------------------
    def claim(
        self, call_id: str | None = None, *, name: str | None = None, args: Any = None
    ) -> tuple[bool, Any]:
        """Take the early result of a call, blocking: ``(True, result)`` or ``(False, None)``.

        ``(False, None)`` means "run the tool yourself": nothing ran early, or the arguments given
        differ from those the call was decoded with. Raises what the tool raised (``EarlyAbort``
        included) and :class:`~conveyor_integrations.errors.AlreadyClaimed` on a second claim.
        """
        ex = self._take(call_id, name, args)
        if ex is None:
            return False, None
        if threading.current_thread() is self._thread:
            raise RuntimeError("claim() would block the scheduler loop; use aclaim()")
        ex.on_claimed()
        if ex.differs(args):
            self.call_soon(_drop_soon, ex)
            return False, None
        return _settled(ex, args, ex.result)

    async def aclaim(
        self, call_id: str | None = None, *, name: str | None = None, args: Any = None
    ) -> tuple[bool, Any]:
        """Async form of :meth:`claim`, usable on any event loop."""
        ex = self._take(call_id, name, args)
        if ex is None:
            return False, None
        ex.on_claimed()
        if ex.differs(args):
            self.call_soon(_drop_soon, ex)
            return False, None
        waited = asyncio.wrap_future(ex.result)
        await asyncio.wait([waited])
        if not waited.cancelled():
            waited.exception()        # read here, or asyncio logs "exception never retrieved"
        return _settled(ex, args, ex.result)

    # -- shutdown ----------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel every pending execution and stop the loop thread and the pool."""
        with self._lock:
            self._closed = True
            loop, thread, pool = self._loop, self._thread, self._pool
            pending = list(self._by_id.values())
            self._by_id.clear()
            self._by_args.clear()
        if loop is not None and thread is not None and thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(_shutdown(pending), loop)
            try:
                fut.result(timeout=15)
            except Exception:  # noqa: BLE001 - shutting down; the loop stops next
                _log.warning("scheduler shutdown did not finish cleanly", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _settled(ex: Execution, args: Any, fut: concurrent.futures.Future[Any]) -> tuple[bool, Any]:
    """The claim's outcome: the stored result, unless the framework's arguments differ."""
    try:
        value = fut.result()
    except BaseException:
        if ex.differs(args):
            return False, None
        raise
    if ex.differs(args):
        return False, None
    return True, value


def _drop_soon_reason(ex: Execution, reason: str) -> None:
    asyncio.get_running_loop().create_task(ex.drop(reason, status="dropped"))


def _drop_soon(ex: Execution) -> None:
    asyncio.get_running_loop().create_task(
        ex.drop("the framework invoked the tool with other arguments", status="dropped"))


async def _shutdown(executions: list[Execution]) -> None:
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
    """The process-wide scheduler that ``@partial_tool`` registers with by default."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Scheduler()
                atexit.register(_default.close)
    return _default


def set_default_scheduler(scheduler: Scheduler | None) -> Scheduler | None:
    """Replace the process-wide scheduler (tests use this); returns the previous one.

    ``None`` forgets it: the next :func:`default_scheduler` call makes a fresh one.
    """
    global _default
    with _default_lock:
        previous, _default = _default, scheduler
    return previous
