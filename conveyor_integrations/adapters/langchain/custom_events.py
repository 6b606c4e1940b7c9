"""The early executions' framework events as LangChain custom events.

``ChatConveyor`` (and ``ConveyorCallbackHandler``) dispatch ``conveyor_tool_started`` when a
decorated tool starts while the message is decoded and ``conveyor_tool_result`` when its result
is ready (see :mod:`conveyor_integrations.adapters.tool_events` for their data): from the model's
run while it streams, and from the tool's run when the result came after the message ended. So
``astream_events(version="v2")`` shows them as ``on_custom_event`` events, and any callback
handler's ``on_custom_event`` gets them. LangChain gives the model its run manager only when
it does not stream (``invoke`` with no streaming handler); ``stream``/``astream`` and an
``invoke`` that streams implicitly (``astream_events``, LangGraph's ``stream_mode="messages"``)
run the model without one, and the events then go, as LangChain's own
``dispatch_custom_event`` sends them, to the handlers of the runnable the model runs in (an
agent's node), as that runnable's events (:func:`relay`). Nothing is watched when no handler of
the run takes custom events (a handler that does not override ``on_custom_event``, or ignores
them), nor for a streamed model called outside any runnable. Example::

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
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)

from ..tool_events import ToolEvent, ToolEvents

__all__ = ["adispatch", "dispatch", "listening", "relay", "watch"]

_NOOPS = (BaseCallbackHandler.on_custom_event, AsyncCallbackHandler.on_custom_event)


def listening(handlers: Iterable[Any]) -> bool:
    """Some handler takes custom events."""
    for h in handlers:
        if getattr(h, "ignore_custom_event", False):
            continue
        if getattr(type(h), "on_custom_event", None) not in _NOOPS:
            return True
    return False


def relay(run_manager: Any, *, is_async: bool) -> Any:
    """Where a model run's events go: its run manager, or without one (a streamed run) the
    callback manager of the runnable it runs in (from the context; async for ``is_async``),
    or None outside any runnable."""
    if run_manager is not None:
        return run_manager
    try:
        config = ensure_config()
        manager: Any = (get_async_callback_manager_for_config(config) if is_async
                        else get_callback_manager_for_config(config))
    except Exception:  # noqa: BLE001 - no usable runnable context: no events
        return None
    return manager if manager.parent_run_id is not None else None


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
    """Tell ``items`` to the handlers of a run (sync run managers), as that run's events, or
    to those of a runnable's callback manager (see :func:`relay`), as the runnable's."""
    if not items or run_manager is None:
        return
    if getattr(run_manager, "run_id", None) is None:
        for item in items:
            run_manager.on_custom_event(item.name, item.data, run_id=run_manager.parent_run_id)
        return
    manager = CallbackManager(**_manager_kwargs(run_manager))
    for item in items:
        manager.on_custom_event(item.name, item.data, run_id=run_manager.run_id)


async def adispatch(run_manager: Any, items: list[ToolEvent]) -> None:
    """Tell ``items`` to the handlers of a run (async run managers), as that run's events, or
    to those of a runnable's callback manager (see :func:`relay`), as the runnable's."""
    if not items or run_manager is None:
        return
    if getattr(run_manager, "run_id", None) is None:
        for item in items:
            await run_manager.on_custom_event(item.name, item.data,
                                              run_id=run_manager.parent_run_id)
        return
    manager = AsyncCallbackManager(**_manager_kwargs(run_manager))
    for item in items:
        await manager.on_custom_event(item.name, item.data, run_id=run_manager.run_id)
