"""Run an async stream on the scheduler's loop and consume it from any thread or loop.

Backends and early executions live on the scheduler's loop (see ``scheduler``); frameworks call
the models from worker threads (sync ``invoke``) or from their own loops (``ainvoke``,
``astream_chat``). These two functions carry the items across, and when the consumer stops early
(``break``, an exception, a cancelled task) they cancel the producer, which closes the backend's
stream and so aborts the request. Example::

    >>> from conveyor_integrations.scheduler import Scheduler
    >>> async def numbers():
    ...     for i in range(3):
    ...         yield i
    >>> s = Scheduler()
    >>> list(iterate_sync(s, numbers))
    [0, 1, 2]
    >>> s.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from ..scheduler import Scheduler
from ..session import RequestSession

__all__ = ["Abandon", "iterate_async", "iterate_sync"]

T = TypeVar("T")
_log = logging.getLogger("conveyor_integrations")
_ITEM, _ERROR, _END = 0, 1, 2


class Abandon:
    """``on_abandon`` for a model turn: cancel the request's early executions when the caller
    leaves before the turn's final item reached it (then nobody will invoke its tools).
    The consumer sets ``delivered`` as it hands the final item on."""

    def __init__(self, session: RequestSession) -> None:
        self.session = session
        self.delivered = False

    def __call__(self) -> None:
        if not self.delivered:
            self.session.cancel("the caller stopped reading the model's stream")


def iterate_sync(sched: Scheduler, make: Callable[[], AsyncIterator[T]],
                 on_abandon: Callable[[], None] | None = None) -> Iterator[T]:
    """Iterate ``make()`` (run on the scheduler's loop) from a synchronous caller.

    ``on_abandon`` is called when the caller leaves before the end (even when the producer had
    already finished), e.g. to cancel the request's early executions."""
    q: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()

    async def pump() -> None:
        try:
            async for item in make():
                q.put((_ITEM, item))
        except BaseException as exc:
            q.put((_ERROR, exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            q.put((_END, None))

    fut = sched.submit(pump())
    ended = False
    try:
        while True:
            kind, item = q.get()
            if kind == _ITEM:
                yield item
            else:
                ended = True
                if kind == _ERROR:
                    raise item
                return
    finally:
        if not ended and on_abandon is not None:
            on_abandon()
        if not fut.done():
            fut.cancel()
            try:
                fut.result(timeout=30)
            except concurrent.futures.CancelledError:
                pass  # cancelled on purpose: the consumer stopped early
            except Exception as exc:  # noqa: BLE001 - the consumer's own exit comes first
                _log.debug("stream producer ended with %r after the consumer left", exc)


async def iterate_async(sched: Scheduler, make: Callable[[], AsyncIterator[T]],
                        on_abandon: Callable[[], None] | None = None) -> AsyncIterator[T]:
    """Iterate ``make()`` (run on the scheduler's loop) from any event loop (see
    :func:`iterate_sync` for ``on_abandon``)."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    def put(kind: int, item: Any) -> None:
        loop.call_soon_threadsafe(q.put_nowait, (kind, item))

    async def pump() -> None:
        try:
            async for item in make():
                put(_ITEM, item)
        except BaseException as exc:
            put(_ERROR, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            put(_END, None)

    ended = False
    if sched.loop is loop:
        try:
            async for item in make():
                yield item
            ended = True
        finally:
            if not ended and on_abandon is not None:
                on_abandon()
        return
    fut = sched.submit(pump())
    try:
        while True:
            kind, item = await q.get()
            if kind == _ITEM:
                yield item
            else:
                ended = True
                if kind == _ERROR:
                    raise item
                return
    finally:
        if not ended and on_abandon is not None:
            on_abandon()
        if not fut.done():
            fut.cancel()
            await asyncio.gather(asyncio.wrap_future(fut), return_exceptions=True)
