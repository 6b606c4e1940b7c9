"""LlamaIndex tools that hand over their early result instead of running twice.

``partial_tool(tool)`` on a LlamaIndex ``FunctionTool`` registers the tool's function with the
scheduler and returns a :class:`ConveyorFunctionTool` (a ``FunctionTool`` with the same metadata,
callbacks and partial params). LlamaIndex agents call ``tool.acall(**kwargs)`` without the call
id, so ``call``/``acall`` first claim the early result by tool name and canonical arguments,
exactly once (two identical calls in one message each get their own result); with no early
result the tool runs as usual. A call stopped by ``EarlyAbort`` yields a ``ToolOutput`` whose
content is the abort's reason, with ``is_error=True``. A result that became ready after the
model's message ended is told (a ``ConveyorToolResultEvent``) when the tool claims it. Example::

    from llama_index.core.tools import FunctionTool
    from conveyor_integrations import partial_tool

    def web_search(query: str, k: int = 3) -> str:
        "Search the web."
        ...

    search = partial_tool(FunctionTool.from_defaults(fn=web_search), start_on=["query"])
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

from llama_index.core.tools import FunctionTool, ToolOutput

from ...errors import AlreadyClaimed, EarlyAbort, ResultDropped
from ...scheduler import Scheduler
from ...spec import ToolSpec, spec_for_callable
from ...store import ABORTED_AND_GONE
from ..common import keyword_view, resolve_scheduler, schema_fields
from ..tool_events import claims, late_events
from .instrumentation import dispatch

__all__ = ["ConveyorFunctionTool", "release_calls", "wrap_llamaindex_tool"]

# the arguments the framework passed to the invocation in progress (None: do not claim)
_CURRENT: ContextVar[dict[str, Any] | None] = ContextVar("conveyor_li_call", default=None)


def release_calls(sched: Scheduler, call_ids: Iterable[str]) -> None:
    """Cancel the early executions of calls the framework will never invoke (e.g. the calls
    after the first when parallel tool calls are off)."""
    for call_id in call_ids:
        sched.release(call_id, "the framework keeps only the first tool call")


def _claim(sched: Scheduler, spec: ToolSpec, args: dict[str, Any]) -> tuple[bool, Any]:
    with claims() as late:
        try:
            found, value = _claim_once(sched, spec, args)
        except BaseException as exc:
            if late:
                dispatch(late_events(late, exc, sched.timing))
            raise
    if late and found:
        dispatch(late_events(late, None, sched.timing))
    return found, value


async def _aclaim(sched: Scheduler, spec: ToolSpec, args: dict[str, Any]) -> tuple[bool, Any]:
    with claims() as late:
        try:
            found, value = await _aclaim_once(sched, spec, args)
        except BaseException as exc:
            if late:
                dispatch(late_events(late, exc, sched.timing))
            raise
    if late and found:
        dispatch(late_events(late, None, sched.timing))
    return found, value


def _claim_once(sched: Scheduler, spec: ToolSpec, args: dict[str, Any]) -> tuple[bool, Any]:
    call_id = sched.store.aborted_call(spec.name, spec.tool_args(args))
    try:
        if call_id is not None:     # never the body on a truncated call
            if not sched.aborted(call_id):
                return True, ABORTED_AND_GONE
            found, value = sched.claim(call_id, spec=spec)  # raises the EarlyAbort
            if found:
                return found, value
        return sched.claim(name=spec.name, args=args, spec=spec)
    except (ResultDropped, AlreadyClaimed):
        return False, None


async def _aclaim_once(sched: Scheduler, spec: ToolSpec,
                       args: dict[str, Any]) -> tuple[bool, Any]:
    call_id = sched.store.aborted_call(spec.name, spec.tool_args(args))
    try:
        if call_id is not None:
            if not sched.aborted(call_id):
                return True, ABORTED_AND_GONE
            found, value = await sched.aclaim(call_id, spec=spec)
            if found:
                return found, value
        return await sched.aclaim(name=spec.name, args=args, spec=spec)
    except (ResultDropped, AlreadyClaimed):
        return False, None


class ConveyorFunctionTool(FunctionTool):
    """A ``FunctionTool`` whose ``call``/``acall`` first claim the early result of the call."""

    def __init__(self, inner: FunctionTool, owner: Scheduler | None, spec: ToolSpec) -> None:
        self.conveyor_inner = inner
        self.conveyor_spec = spec
        inner_fn, inner_afn = inner.fn, inner.async_fn

        @functools.wraps(inner.real_fn)
        def fn(*a: Any, **kw: Any) -> Any:
            args = _CURRENT.get()
            if args is not None:
                _CURRENT.set(None)   # claim once per invocation
                found, value = _claim(resolve_scheduler(owner), spec, args)
                if found:
                    return value
            return inner_fn(*a, **kw)

        @functools.wraps(inner.real_fn)
        async def afn(*a: Any, **kw: Any) -> Any:
            args = _CURRENT.get()
            if args is not None:
                _CURRENT.set(None)
                found, value = await _aclaim(resolve_scheduler(owner), spec, args)
                if found:
                    return value
            return await inner_afn(*a, **kw)

        super().__init__(fn=fn, metadata=inner.metadata, async_fn=afn,
                         callback=inner._callback, async_callback=inner._async_callback,
                         partial_params=dict(inner.partial_params))
        self._real_fn = inner.real_fn

    def _claim_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        if args:
            return None  # positional use: not an agent's call
        skip = set(self.partial_params) | {self.ctx_param_name}
        return {k: v for k, v in kwargs.items() if k not in skip}

    def _abort_output(self, exc: EarlyAbort, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> ToolOutput:
        return ToolOutput(content=exc.reason, tool_name=self.metadata.get_name(),
                          raw_input={"args": args, "kwargs": kwargs}, raw_output=exc.reason,
                          is_error=True, exception=exc)

    def call(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """Sync call: the early result if there is one, else the tool."""
        token = _CURRENT.set(self._claim_args(args, kwargs))
        try:
            out: ToolOutput = super().call(*args, **kwargs)
            return out
        except EarlyAbort as exc:
            return self._abort_output(exc, args, kwargs)
        finally:
            _CURRENT.reset(token)

    async def acall(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """Async call: the early result if there is one, else the tool."""
        token = _CURRENT.set(self._claim_args(args, kwargs))
        try:
            out: ToolOutput = await super().acall(*args, **kwargs)
            return out
        except EarlyAbort as exc:
            return self._abort_output(exc, args, kwargs)
        finally:
            _CURRENT.reset(token)


def _early_runner(tool: FunctionTool) -> tuple[Callable[[dict[str, Any]], Any], bool]:
    """A callable(args) that runs the tool's own function, and whether it is async."""
    fixed = {**getattr(tool, "_field_defaults", {}), **tool.partial_params}
    if inspect.iscoroutinefunction(tool.real_fn):
        afn = tool.async_fn

        async def arun(args: dict[str, Any]) -> Any:
            return await afn(**{**fixed, **args})

        return arun, True
    sfn = tool.fn

    def run(args: dict[str, Any]) -> Any:
        return sfn(**{**fixed, **args})

    return run, False


def wrap_llamaindex_tool(tool: Any, scheduler: Scheduler | None = None,
                         **options: Any) -> FunctionTool:
    """``partial_tool`` for a LlamaIndex ``FunctionTool``: register it, return the claiming copy.

    ``options`` are ``partial_tool``'s (start_on, stream, unit, items, execution, side_effects,
    timeout). Tools that take a workflow ``Context`` cannot start early (no context exists yet).
    """
    if not isinstance(tool, FunctionTool):
        raise TypeError(f"partial_tool expects a LlamaIndex FunctionTool, not "
                        f"{type(tool).__name__}; wrap the function with FunctionTool.from_defaults")
    inner = tool.conveyor_inner if isinstance(tool, ConveyorFunctionTool) else tool
    if inner.requires_context:
        raise TypeError(f"tool {inner.metadata.name!r} takes a workflow Context, which does not "
                        "exist before the agent invokes it; it cannot run early")
    run, is_async = _early_runner(inner)
    fields, defaults = schema_fields(inner.metadata.fn_schema)
    if fields is not None:
        fields = fields - set(inner.partial_params)
    options["read_only"] = bool(options.get("read_only"))
    spec = spec_for_callable(inner.metadata.get_name(), keyword_view(run, fields, defaults),
                             run=run, fields=fields, defaults=defaults, is_async=is_async,
                             **options)
    return ConveyorFunctionTool(inner, scheduler, spec)
