"""The early executions' framework events as LlamaIndex instrumentation events.

``ConveyorLLM`` dispatches a :class:`ConveyorToolStartedEvent` when a decorated tool starts while
the message is decoded, and a :class:`ConveyorToolResultEvent` when its result is ready: from
the model's turn while it streams, and from the tool's call when the result came after the
message ended (see :mod:`conveyor_integrations.adapters.tool_events` for the fields). They go
through ``get_dispatcher`` like LlamaIndex's own events, so a ``BaseEventHandler`` added to the
root dispatcher (or to ``conveyor_integrations``') sees them. Nothing is watched while no
handler but LlamaIndex's null one is reachable. Example::

    >>> event = ConveyorToolStartedEvent(tool="search", call_id="call_1", request_id="r1",
    ...                                  index=0, at=0.0, elapsed_s=0.1)
    >>> event.class_name(), event.tool
    ('ConveyorToolStartedEvent', 'search')
"""

from __future__ import annotations

from typing import Any

from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import NullEventHandler
from llama_index.core.instrumentation.events import BaseEvent

from ..tool_events import RESULT, STARTED, ToolEvent, ToolEvents

__all__ = ["ConveyorToolResultEvent", "ConveyorToolStartedEvent", "dispatch", "watch"]

dispatcher = get_dispatcher(__name__)


class ConveyorToolStartedEvent(BaseEvent):
    """A decorated tool started early, while its call was being decoded."""

    tool: str
    call_id: str
    request_id: str
    index: int
    """The call's index in its message."""
    at: float
    """When its body began (epoch seconds)."""
    elapsed_s: float
    """When its body began, in seconds since the request began."""

    @classmethod
    def class_name(cls) -> str:
        return "ConveyorToolStartedEvent"


class ConveyorToolResultEvent(BaseEvent):
    """The result of a tool that started early is ready (or its early work was cancelled)."""

    tool: str
    call_id: str
    request_id: str
    index: int
    status: str
    """ok, error, aborted (``EarlyAbort``) or cancelled."""
    early: bool = True
    seconds: float | None = None
    """The tool's run time."""
    elapsed_s: float | None = None
    """When it ended, in seconds since the request began."""
    reason: str | None = None
    """Why it was aborted or cancelled."""

    @classmethod
    def class_name(cls) -> str:
        return "ConveyorToolResultEvent"


_KINDS: dict[str, type[BaseEvent]] = {STARTED: ConveyorToolStartedEvent,
                                      RESULT: ConveyorToolResultEvent}


def _listening() -> bool:
    c: Any = dispatcher
    while c is not None:
        if any(not isinstance(h, NullEventHandler) for h in c.event_handlers):
            return True
        c = c.parent if c.propagate else None
    return False


def watch() -> ToolEvents | None:
    """A fresh observer for a model turn when some event handler listens, else None."""
    return ToolEvents() if _listening() else None


def dispatch(items: list[ToolEvent]) -> None:
    """Dispatch ``items`` as instrumentation events (on the caller's thread and span)."""
    for item in items:
        dispatcher.event(_KINDS[item.name](**item.data))
