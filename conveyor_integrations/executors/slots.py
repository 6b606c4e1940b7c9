"""A bounded count of in-flight remote calls, shared by every event loop of the process.

Streams run on many loops (the caller's, the scheduler's own), so an ``asyncio.Semaphore``,
which belongs to one loop, cannot bound them together; this one hands a freed slot straight to
the oldest waiter on whatever loop it waits. Written here because neither asyncio nor anyio
has a semaphore that spans loops. Example::

    >>> import asyncio
    >>> slots = Slots(1)
    >>> async def twice():
    ...     await slots.acquire(1.0, "first")
    ...     try:
    ...         await slots.acquire(0.01, "second")
    ...     except Exception as exc:
    ...         print(type(exc).__name__)
    ...     slots.release()
    >>> asyncio.run(twice())
    ClusterBusy
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from ..errors import ConveyorError

__all__ = ["ClusterBusy", "Slots"]


class ClusterBusy(ConveyorError):
    """No room for another remote call within the executor's ``queue_timeout``."""


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Slots:
    """At most ``limit`` holders at once; waiters are served in arrival order."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {limit}")
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def in_use(self) -> int:
        """Slots held now."""
        return self._used

    async def acquire(self, timeout: float, what: str) -> None:
        """Take a slot, waiting at most ``timeout`` s (then :class:`ClusterBusy` naming ``what``)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._used < self.limit and not self._waiters:
                self._used += 1
                return
            entry = (loop, loop.create_future())
            self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[1]
        except BaseException as exc:
            with self._lock:
                waiting = entry in self._waiters
                if waiting:
                    self._waiters.remove(entry)
            if not waiting:            # a slot was handed over as we gave up: pass it on
                self.release()
            if isinstance(exc, TimeoutError):
                raise ClusterBusy(f"{what}: {self.limit} remote calls were already in flight "
                                  f"and none ended within {timeout:g} s (raise the executor's "
                                  "max_in_flight or queue_timeout, or add nodes)") from None
            raise

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if there is one."""
        with self._lock:
            while self._waiters:
                loop, fut = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(_wake, fut)
                    return                     # the slot passes to it, still counted
                except RuntimeError:           # its loop has closed
                    continue
            self._used -= 1
