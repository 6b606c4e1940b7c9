"""What early executions do, told to whoever watches them: tracing, framework events.

An :class:`Observer` is opened once per request session, in the caller's context (where the
model's stream runs, so a tracer can parent its spans to the current span), and the callback it
returns gets one :class:`ExecutionEvent` per step of each early execution of that request:

- ``start``: the execution was made (its call's name was decoded, or its call completed for a
  complete-call tool);
- ``tool_start``: the tool's body began;
- ``piece``: a field or an item was fed to it (``detail``: ``path``, and ``item`` for items);
  text chunks are not told one by one, ``finish`` counts them;
- ``finish``: its work ended (``detail``: ``status`` ok, error or aborted, ``text_chunks``);
- ``abort``: it raised ``EarlyAbort`` (``detail``: ``reason``); decoding stops;
- ``rerun``: its early work was void, the tool runs again on the complete arguments;
- ``claim``: the framework took its result (once);
- ``cancel``: it was dropped: cancelled, expired, malformed or claimed by another tool
  (``detail``: ``reason``, ``status``).

Every execution that starts ends with ``claim`` or ``cancel``, except an aborted one nobody
claims, which is cancelled when it expires. Callbacks are called on the thread where the step
happens (the execution's loop, or the pool thread of a synchronous body), so they must be cheap
and thread-safe, and they must not raise: an observer's error is logged and the execution goes
on. Nothing is observed, at no cost, until an observer is added. Example::

    >>> seen = []
    >>> class Note:
    ...     def open(self, request_id):
    ...         return seen.append
    >>> note = Note()
    >>> add_observer(note)
    >>> observe = open_observers("req-1")
    >>> observe(ExecutionEvent("start", 0.0, "req-1", "call_1", "search", 0))
    >>> remove_observer(note)
    >>> [(e.kind, e.tool) for e in seen], open_observers("req-2") is None
    ([('start', 'search')], True)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["KINDS", "ExecutionEvent", "Observe", "Observer", "add_observer", "open_observers",
           "remove_observer"]

_log = logging.getLogger("conveyor_integrations")

KINDS = ("start", "tool_start", "piece", "finish", "abort", "rerun", "claim", "cancel")
"""The kinds of :class:`ExecutionEvent`, in the order they can happen."""


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """One step of one early execution."""

    kind: str
    """One of :data:`KINDS`."""
    at: float
    """``time.perf_counter()`` when it happened."""
    request_id: str
    call_id: str
    tool: str
    index: int
    """The call's index in its message."""
    detail: Mapping[str, Any] = field(default_factory=dict)


Observe = Callable[[ExecutionEvent], None]
"""What an observer is told each event through."""


class Observer(Protocol):
    """Watches the early executions of every request made while it is added."""

    def open(self, request_id: str) -> Observe | None:
        """Called when a request's session is made, in the caller's context; returns the
        callback for that request's events, or None to watch nothing of it."""


_lock = threading.Lock()
_observers: tuple[Observer, ...] = ()


def add_observer(observer: Observer) -> None:
    """Watch every request made from now on (process-wide; once per observer)."""
    global _observers
    with _lock:
        if observer not in _observers:
            _observers = (*_observers, observer)


def remove_observer(observer: Observer) -> None:
    """Stop watching new requests (those already open keep their callback)."""
    global _observers
    with _lock:
        _observers = tuple(o for o in _observers if o is not observer)


def open_observers(request_id: str, extra: Iterable[Observer] = ()) -> Observe | None:
    """The one callback of the added observers and ``extra`` for a new request, or None when
    nothing watches it. An observer whose ``open`` raises is logged and left out."""
    callbacks: list[Observe] = []
    for observer in (*_observers, *extra):
        try:
            cb = observer.open(request_id)
        except Exception:  # noqa: BLE001 - a broken observer must not break the request
            _log.warning("observer %r failed to open request %s", observer, request_id,
                         exc_info=True)
            continue
        if cb is not None:
            callbacks.append(cb)
    if not callbacks:
        return None
    if len(callbacks) == 1:
        return _guarded(callbacks[0])
    guarded = [_guarded(cb) for cb in callbacks]

    def all_of(event: ExecutionEvent) -> None:
        for cb in guarded:
            cb(event)

    return all_of


def _guarded(cb: Observe) -> Observe:
    def call(event: ExecutionEvent) -> None:
        try:
            cb(event)
        except Exception:  # noqa: BLE001 - see the module's docstring
            _log.warning("observer callback %r failed on %s of %s", cb, event.kind,
                         event.call_id, exc_info=True)

    return call
