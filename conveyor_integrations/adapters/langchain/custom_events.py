"""The early executions' framework events as LangChain custom events.

``ChatConveyor`` (and ``ConveyorCallbackHandler``) dispatch ``conveyor_tool_started`` when a
decorated tool starts while the message is decoded and ``conveyor_tool_result`` when its result
is ready (see :mod:`conveyor_integrations.adapters.tool_events` for their data): from the model's
run while it streams, and from the tool's run when the result came after the message ended. So
``astream_events(version="v2")`` shows them as ``on_custom_event`` events, and any callback
handler's ``on_custom_event`` gets them. Nothing is watched when no handler of the run takes
custom events (a handler that does not override ``on_custom_event``, or ignores them).
Example::

    >>> from langchain_core.callbacks import BaseCallbackHandler
    >>> class Printer(BaseCallbackHandler):
    ...     def on_custom_event(self, name, data, **kwargs):
    ...         print(name)
    >>> listening([BaseCallbackHandler()]), listening([Printer()])
    (False, True)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackHandler,
    AsyncCallbackManager,
    BaseCallbackHandler,
    CallbackManager,
)

from ..tool_events import ToolEvent, ToolEvents

__all__ = ["adispatch", "dispatch", "listening", "watch"]

_NOOPS = (BaseCallbackHandler.on_custom_event, AsyncCallbackHandler.on_custom_event)


def listening(handlers: Iterable[Any]) -> bool:
    """Some handler takes custom events."""
    for h in handlers:
        if getattr(h, "ignore_custom_event", False):
            continue
        if getattr(type(h), "on_custom_event", None) not in _NOOPS:
            return True
    return False


def watch(run_manager: Any) -> ToolEvents | None:
    """A fresh observer for a model run whose handlers take custom events, else None."""
    if run_manager is None or not listening(run_manager.handlers):
        return None
    return ToolEvents()


def _manager_kwargs(run_manager: Any) -> dict[str, Any]:
    return {"handlers": run_manager.handlers,
            "inheritable_handlers": run_manager.inheritable_handlers,
            "parent_run_id": run_manager.parent_run_id, "tags": run_manager.tags,
            "inheritable_tags": run_manager.inheritable_tags, "metadata": run_manager.metadata,
            "inheritable_metadata": run_manager.inheritable_metadata}


def dispatch(run_manager: Any, items: list[ToolEvent]) -> None:
    """Tell ``items`` to the handlers of a run (sync run managers), as that run's events."""
    if not items or run_manager is None:
        return
    manager = CallbackManager(**_manager_kwargs(run_manager))
    for item in items:
        manager.on_custom_event(item.name, item.data, run_id=run_manager.run_id)


async def adispatch(run_manager: Any, items: list[ToolEvent]) -> None:
    """Tell ``items`` to the handlers of a run (async run managers), as that run's events."""
    if not items or run_manager is None:
        return
    manager = AsyncCallbackManager(**_manager_kwargs(run_manager))
    for item in items:
        await manager.on_custom_event(item.name, item.data, run_id=run_manager.run_id)
