"""Calls onto an event loop from other threads, with one wake-up per batch.

``loop.call_soon_threadsafe`` writes to the loop's self-pipe on every call, and each write wakes
the loop for one more turn: on a stream of small calls (one ``start_on`` search per call, each
call's events, each claim's timer cancel) the wake-ups cost more than the work. An
:class:`LoopInbox` queues the calls in order and wakes the loop once: the calls posted while a
wake-up is pending ride on it. asyncio has no such batching, hence this module. One inbox per
loop (:func:`inbox_for`); the calls run in an empty context, so nothing a poster's context
carries (a LangChain run config) leaks into tasks they start. Example::

    >>> import asyncio, threading
    >>> loop = asyncio.new_event_loop()
    >>> seen = []
    >>> def post_three():
    ...     inbox = inbox_for(loop)
    ...     for i in range(3):
    ...         inbox.post(seen.append, i)
    ...     inbox.post(loop.stop)
    >>> threading.Thread(target=post_three).start()
    >>> loop.run_forever(); loop.close()
    >>> seen
    [0, 1, 2]
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["LoopInbox", "inbox_for"]

_INBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopInbox] = (
    weakref.WeakKeyDictionary())
_INBOXES_LOCK = threading.Lock()


class LoopInbox:
    """Runs posted calls on ``loop`` in the order they were posted, waking it once per batch."""

    __slots__ = ("__weakref__", "_armed", "_inbox", "_lock", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._inbox: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._armed = False

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` on the loop soon, from any thread. Raises ``RuntimeError`` when
        the loop is closed (as ``call_soon_threadsafe`` does)."""
        with self._lock:
            self._inbox.append((fn, args))
            if self._armed:
                return
            self._armed = True
        try:
            self.loop.call_soon_threadsafe(self._drain, context=contextvars.Context())
        except RuntimeError:
            with self._lock:
                self._armed = False
                self._inbox.clear()
            raise

    def _drain(self) -> None:
        with self._lock:
            batch, self._inbox, self._armed = self._inbox, [], False
        for fn, args in batch:
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - one failing call must not drop the rest
                self.loop.call_exception_handler({"message": f"exception in {fn!r} posted to "
                                                  "the loop", "exception": exc})


def inbox_for(loop: asyncio.AbstractEventLoop) -> LoopInbox:
    """The inbox of ``loop`` (made on first use, forgotten with the loop)."""
    inbox = _INBOXES.get(loop)
    if inbox is None:
        with _INBOXES_LOCK:
            inbox = _INBOXES.get(loop)
            if inbox is None:
                inbox = _INBOXES[loop] = LoopInbox(loop)
    return inbox
