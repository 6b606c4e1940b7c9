"""``@partial_tool``: let a tool you already have start on the part of its call already decoded.

Conveyor's tools implement ``post_init()``, ``process_new_dat(data)`` and ``finish()``; ours are
``start(call)``, ``feed(event)``, ``finish(args)`` and ``cancel()``, all async
(:class:`~conveyor_integrations.spec.PartialExecution`). Raising
:class:`~conveyor_integrations.errors.EarlyAbort` from ``start`` or ``feed`` stops decoding.

Most users never implement it: they put ``@partial_tool(...)`` on a tool they already have::

    >>> from conveyor_integrations import partial_tool
    >>> @partial_tool(start_on=["query"])
    ... def web_search(query: str, k: int = 5) -> str:
    ...     return f"results for {query}"
    >>> web_search("x")
    'results for x'
    >>> web_search.conveyor_spec.name
    'web_search'

The decorated object is the same kind of object as the one given (a function stays a function;
LangChain and LlamaIndex tools are handled by their adapters) and carries its
:class:`~conveyor_integrations.spec.ToolSpec`. Nothing is registered anywhere: a model starts a
tool early only when the agent binds that very object to it.

A decorated function called with the partial arguments of a call whose early execution stopped
decoding (``EarlyAbort``, e.g. a field failed validation) returns the abort's reason instead of
running its body on a truncated call: the adapters remember such calls by their partial
arguments (:meth:`~conveyor_integrations.store.ResultStore.note_aborted`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .early_run import executor_of
from .errors import EarlyAbort
from .spec import PartialExecution, ToolExecutor, spec_for_callable
from .store import ABORTED_AND_GONE
from .strategies import Combine

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["partial_tool"]



def partial_tool(
    tool: Any = None,
    *,
    start_on: Sequence[str] | None = None,
    stream: str | None = None,
    unit: str = "line",
    items: str | None = None,
    combine: Combine | None = None,
    execution: Callable[[], PartialExecution] | None = None,
    side_effects: bool = False,
    timeout: float | None = None,
    scheduler: Scheduler | None = None,
    executor: ToolExecutor | None = None,
    read_only: bool | None = None,
    follow_up: Callable[[dict[str, Any], Any], Any] | None = None,
) -> Any:
    """Let ``tool`` start on the part of its call that is already decoded.

    Takes a plain function (sync or async), a LangChain ``BaseTool`` or a LlamaIndex
    ``FunctionTool`` and returns the same kind of object; usable bare, with keywords, or as a call::

        @partial_tool(stream="code", unit="statement", execution=PythonExecution)
        def run_python(code: str) -> str: ...

        fast = partial_tool(existing_tool, start_on=["url"])

    Strategies: ``start_on=[fields]`` runs the whole tool once those fields are final;
    ``items=field`` / ``stream=field`` run it once per list item / string piece, and ``combine``
    turns the per-piece results into the tool's result for the whole call (or ``execution=``
    takes the pieces); ``execution=`` is your own :class:`PartialExecution` class. With no
    strategy the tool runs as soon as its call has begun. ``side_effects=True`` tools never run
    on a prefix. Options are checked against the tool's fields here: a misspelt field raises.
    ``scheduler`` is where claims go (default: the process-wide one, looked up when called).
    ``executor`` runs the tool's early work elsewhere, e.g. on a Ray cluster
    (:class:`~conveyor_integrations.executors.RayExecutor`); checked here.
    ``read_only=True`` says running the tool changes nothing (for an MCP tool, its
    ``readOnlyHint`` annotation is the default), so it may run speculatively; ``follow_up(args,
    result)`` returns the calls likely to come after this one
    (:class:`~conveyor_integrations.speculation.Prediction`), started before the model writes
    them when they are read-only tools of the request (:mod:`~conveyor_integrations.speculation`).
    """
    options: dict[str, Any] = {"start_on": start_on, "stream": stream, "unit": unit,
                               "items": items, "combine": combine, "execution": execution,
                               "side_effects": side_effects, "timeout": timeout,
                               "executor": executor, "read_only": read_only,
                               "follow_up": follow_up}

    def wrap(obj: Any) -> Any:
        modules = [c.__module__ for c in type(obj).__mro__]
        if any(m.startswith(("langchain", "langgraph")) for m in modules):
            from .adapters.langchain.tools import wrap_langchain_tool

            return wrap_langchain_tool(obj, scheduler, **options)
        if any(m.startswith("llama_index") for m in modules):
            from .adapters.llamaindex.tools import wrap_llamaindex_tool

            return wrap_llamaindex_tool(obj, scheduler, **options)
        if not callable(obj):
            raise TypeError(f"partial_tool expects a function or a tool object, not {obj!r}")
        return _wrap_function(obj, scheduler, options)

    return wrap if tool is None else wrap(tool)


def _wrap_function(fn: Callable[..., Any], sched: Scheduler | None,
                   options: dict[str, Any]) -> Callable[..., Any]:
    if getattr(fn, "conveyor_spec", None) is not None:
        fn = fn.__wrapped__  # type: ignore[attr-defined]   # re-decorated: from the original
    name = getattr(fn, "__name__", type(fn).__name__)
    spec = spec_for_callable(name, fn, **{**options, "read_only": bool(options["read_only"])})
    sig = inspect.signature(fn)

    def claimer() -> Scheduler:
        if sched is not None:
            return sched
        from .scheduler import default_scheduler

        return default_scheduler()

    var_kw = next((p.name for p in sig.parameters.values()
                   if p.kind is inspect.Parameter.VAR_KEYWORD), None)

    def as_args(a: tuple[Any, ...], kw: dict[str, Any]) -> dict[str, Any]:
        args = dict(sig.bind(*a, **kw).arguments)
        if var_kw is not None:      # ``**fields``: the call's own keywords, as the model wrote
            args.update(args.pop(var_kw, {}))
        return args

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*a: Any, **kw: Any) -> Any:
            sched, args = claimer(), as_args(a, kw)
            call_id = sched.store.aborted_call(name, spec.tool_args(args))
            try:
                if call_id is not None:                 # never the body on a truncated call
                    if not sched.aborted(call_id):
                        return ABORTED_AND_GONE
                    await sched.aclaim(call_id, spec=spec)      # raises its EarlyAbort
                found, value = await sched.aclaim(name=name, args=args, spec=spec)
            except EarlyAbort as exc:
                return exc.reason
            if found:
                return value
            executor = executor_of(spec, sched.executor)
            if executor is not None:              # where the tool's work runs, now too
                return await executor.run(spec, spec.tool_args(args))
            return await fn(*a, **kw)

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(fn)
        def sync_wrapper(*a: Any, **kw: Any) -> Any:
            sched, args = claimer(), as_args(a, kw)
            call_id = sched.store.aborted_call(name, spec.tool_args(args))
            try:
                if call_id is not None:
                    if not sched.aborted(call_id):
                        return ABORTED_AND_GONE
                    sched.claim(call_id, spec=spec)
                found, value = sched.claim(name=name, args=args, spec=spec)
            except EarlyAbort as exc:
                return exc.reason
            if found:
                return value
            executor = executor_of(spec, sched.executor)
            if executor is not None:
                return sched.submit(executor.run(spec, spec.tool_args(args))).result()
            return fn(*a, **kw)

        wrapper = sync_wrapper
    wrapper.conveyor_spec = spec  # type: ignore[attr-defined]
    return wrapper
