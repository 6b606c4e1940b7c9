"""LlamaIndex tools that hand over their early result instead of running twice.

``partial_tool(tool)`` on a LlamaIndex ``FunctionTool`` registers the tool's function with the
scheduler and returns a :class:`ConveyorFunctionTool` (a ``FunctionTool`` with the same metadata,
callbacks and partial params). LlamaIndex agents call ``tool.acall(**kwargs)`` without the call
id, so ``call``/``acall`` first claim the early result by tool name and canonical arguments,
exactly once (two identical calls in one message each get their own result); with no early
result the tool runs as usual. A call stopped by ``EarlyAbort`` yields a ``ToolOutput`` whose
content is the abort's reason, with ``is_error=True``. Example::

    from llama_index.core.tools import FunctionTool
    from conveyor_integrations import partial_tool

    def web_search(query: str, k: int = 3) -> str:
        "Search the web."
        ...

    search = partial_tool(FunctionTool.from_defaults(fn=web_search), start_on=["query"])
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

from llama_index.core.tools import FunctionTool, ToolOutput

from ..errors import AlreadyClaimed, EarlyAbort, ResultDropped
from ..events import CallDone
from ..partial import ToolSpec, spec_for_function
from ..scheduler import Scheduler, canonical_args

__all__ = ["ConveyorFunctionTool", "note_aborted_call", "release_calls", "wrap_llamaindex_tool"]

# the arguments the framework passed to the invocation in progress (None: do not claim)
_CURRENT: ContextVar[dict[str, Any] | None] = ContextVar("conveyor_li_call", default=None)
_ABORTED_MEMORY = 1024
_aborted: weakref.WeakKeyDictionary[Scheduler, OrderedDict[tuple[str, str], deque[str]]] = (
    weakref.WeakKeyDictionary())
_aborted_lock = threading.Lock()


def note_aborted_call(sched: Scheduler, call: CallDone) -> None:
    """Remember that ``call`` (with its partial arguments) was stopped by an early abort, so that
    a claim by name and those arguments reaches its ``EarlyAbort`` (it was never indexed by its
    arguments, which were incomplete). ``ConveyorLLM`` calls this at the end of such a turn."""
    key = (call.name, canonical_args(call.args))
    with _aborted_lock:
        table = _aborted.setdefault(sched, OrderedDict())
        table.setdefault(key, deque()).append(call.id)
        while len(table) > _ABORTED_MEMORY:
            table.popitem(last=False)


def release_calls(sched: Scheduler, call_ids: Iterable[str]) -> None:
    """Cancel the early executions of calls the framework will never invoke (e.g. the calls
    after the first when parallel tool calls are off). Uses the scheduler's internals: the core
    has no public "release this call" yet."""
    for call_id in call_ids:
        try:
            ex = sched._take(call_id, None, None)
        except AlreadyClaimed:
            continue
        if ex is not None:
            ex.on_claimed()
            sched.call_soon(_drop_soon, ex)


def _drop_soon(ex: Any) -> None:
    asyncio.get_running_loop().create_task(
        ex.drop("the framework keeps only the first tool call", status="dropped"))


def _pop_aborted(sched: Scheduler, name: str, args: dict[str, Any]) -> str | None:
    key = (name, canonical_args(args))
    with _aborted_lock:
        table = _aborted.get(sched)
        q = table.get(key) if table is not None else None
        if not q:
            return None
        call_id = q.popleft()
        if not q:
            del table[key]  # type: ignore[union-attr]
        return call_id


def _claim(sched: Scheduler, name: str, args: dict[str, Any]) -> tuple[bool, Any]:
    call_id = _pop_aborted(sched, name, args)
    try:
        if call_id is not None and sched.aborted(call_id):
            found, value = sched.claim(call_id)  # raises the EarlyAbort
            if found:
                return found, value
        return sched.claim(name=name, args=args)
    except ResultDropped:
        return False, None


async def _aclaim(sched: Scheduler, name: str, args: dict[str, Any]) -> tuple[bool, Any]:
    call_id = _pop_aborted(sched, name, args)
    try:
        if call_id is not None and sched.aborted(call_id):
            found, value = await sched.aclaim(call_id)
            if found:
                return found, value
        return await sched.aclaim(name=name, args=args)
    except ResultDropped:
        return False, None


class ConveyorFunctionTool(FunctionTool):
    """A ``FunctionTool`` whose ``call``/``acall`` first claim the early result of the call."""

    def __init__(self, inner: FunctionTool, sched: Scheduler, spec: ToolSpec) -> None:
        self.conveyor_inner = inner
        self.conveyor_scheduler = sched
        self.conveyor_spec = spec
        name = spec.name
        inner_fn, inner_afn = inner.fn, inner.async_fn

        @functools.wraps(inner.real_fn)
        def fn(*a: Any, **kw: Any) -> Any:
            args = _CURRENT.get()
            if args is not None:
                _CURRENT.set(None)   # claim once per invocation
                found, value = _claim(sched, name, args)
                if found:
                    return value
            return inner_fn(*a, **kw)

        @functools.wraps(inner.real_fn)
        async def afn(*a: Any, **kw: Any) -> Any:
            args = _CURRENT.get()
            if args is not None:
                _CURRENT.set(None)
                found, value = await _aclaim(sched, name, args)
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


def _kwargs_fn(tool: FunctionTool, run: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
    """A keyword view of ``run`` whose signature carries the schema's defaults, so that early and
    final arguments compare with defaults filled in."""

    def call(**kw: Any) -> Any:
        return run(kw)

    fields = getattr(tool.metadata.fn_schema, "model_fields", None)
    if isinstance(fields, dict):
        params = [inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if info.is_required()
            else info.get_default(call_default_factory=True)) for name, info in fields.items()]
        call.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return call


def wrap_llamaindex_tool(tool: Any, sched: Scheduler, **kwargs: Any) -> FunctionTool:
    """``partial_tool`` for a LlamaIndex ``FunctionTool``: register it, return the claiming copy.

    ``kwargs`` are ``partial_tool``'s (start_on, stream, unit, items, execution, side_effects,
    timeout). Tools that take a workflow ``Context`` cannot start early (no context exists yet).
    """
    if not isinstance(tool, FunctionTool):
        raise TypeError(f"partial_tool expects a LlamaIndex FunctionTool, not "
                        f"{type(tool).__name__}; wrap the function with FunctionTool.from_defaults")
    inner = tool.conveyor_inner if isinstance(tool, ConveyorFunctionTool) else tool
    if inner.requires_context:
        raise TypeError(f"tool {inner.metadata.name!r} takes a workflow Context, which does not "
                        "exist before the agent invokes it; it cannot run early")
    name = inner.metadata.get_name()
    run, is_async = _early_runner(inner)
    plain = spec_for_function(name, _kwargs_fn(inner, run), **kwargs)
    spec = ToolSpec(name=name, make_execution=plain.make_execution, run=run,
                    streams=plain.streams, side_effects=plain.side_effects,
                    timeout=plain.timeout, is_async=is_async)
    sched.register(spec)
    return ConveyorFunctionTool(inner, sched, spec)
