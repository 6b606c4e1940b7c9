"""LangChain tools that hand over their early result instead of running twice.

``partial_tool(tool)`` on a LangChain ``BaseTool`` (``@tool`` functions, ``StructuredTool`` and
MCP tools from langchain-mcp-adapters included) returns a copy of the tool whose class is a
subclass of the tool's own, made for this one decorated tool and carrying its ``conveyor_spec``;
name, description and args schema are unchanged and the original is not touched. When a
framework invokes it with a tool call (``ToolNode``, ``create_agent``, ``tool.invoke(tool_call)``),
``_run``/``_arun`` first claim the early result for that call id, as this very tool; with none,
the tool runs as usual. Everything else (callbacks, validation, error handling, ``ToolMessage``
formatting) stays LangChain's own; the ``ToolMessage`` also gets the call's final timings under
``response_metadata["conveyor"]``. A result that became ready after the model's message ended
is told (the ``conveyor_tool_result`` custom event, see :mod:`.custom_events`) from the tool's
run, when it is claimed. Example::

    from langchain_core.tools import tool
    from conveyor_integrations import partial_tool

    @partial_tool(start_on=["query"])
    @tool
    def web_search(query: str) -> str:
        "Search the web."
        ...
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool

from ...early_run import executor_of
from ...errors import EarlyAbort
from ...scheduler import Scheduler
from ...spec import ToolSpec, spec_for_callable
from ..common import keyword_view, resolve_scheduler, schema_fields
from ..tool_events import claims, late_events
from .custom_events import adispatch, dispatch

__all__ = ["wrap_langchain_tool"]

# (tool call id, arguments as the framework passed them) of the invocation in progress
_CURRENT: ContextVar[tuple[str | None, Any] | None] = ContextVar("conveyor_lc_call", default=None)


def _early_runner(inner: BaseTool) -> tuple[Any, bool]:
    """A callable(args) that does what ``inner._run``/``_arun`` would, and whether it is async."""

    def extras(run_params: Any) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if "run_manager" in run_params:
            kw["run_manager"] = None
        if "config" in run_params:
            kw["config"] = {}
        return kw

    if isinstance(inner, StructuredTool) and inner.coroutine is not None:
        aparams = inspect.signature(inner._arun).parameters

        async def arun(args: dict[str, Any]) -> Any:
            targs, tkw = inner._to_args_and_kwargs(args, None)
            return await inner._arun(*targs, **tkw, **extras(aparams))

        return arun, True
    params = inspect.signature(inner._run).parameters

    def run(args: dict[str, Any]) -> Any:
        targs, tkw = inner._to_args_and_kwargs(args, None)
        return inner._run(*targs, **tkw, **extras(params))

    return run, False


def _claim_args(tool: BaseTool, tool_input: Any) -> Any:
    if not isinstance(tool_input, dict):
        return None
    flt = getattr(tool, "_filter_injected_args", None)
    return flt(tool_input) if flt is not None else tool_input


def _abort_output(exc: EarlyAbort, tool: BaseTool, call_id: str | None) -> Any:
    if call_id is None:
        return exc.reason
    return ToolMessage(content=exc.reason, tool_call_id=call_id, name=tool.name, status="error")


def _forward(params: Any, config: Any, run_manager: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if "config" in params:
        kw["config"] = config
    if "run_manager" in params:
        kw["run_manager"] = run_manager
    return kw


def _partial_class(base: type[BaseTool], spec: ToolSpec, owner: Scheduler | None) -> type[BaseTool]:
    base_run_params = inspect.signature(base._run).parameters
    base_arun_params = inspect.signature(base._arun).parameters

    def release(call_id: str | None) -> None:
        # invoked without taking the early result (e.g. the arguments failed the schema
        # before _run, which raised): nobody will claim it now, so stop its work at once
        if call_id is not None:
            resolve_scheduler(owner).release(call_id, "the framework invoked the tool without "
                                             "using its early result")

    def done(out: Any, call_id: str | None) -> Any:
        release(call_id)
        timing = resolve_scheduler(owner).timing(call_id) if call_id is not None else None
        if timing is not None and isinstance(out, ToolMessage):
            out.response_metadata["conveyor"] = timing.as_dict()
        return out

    @contextmanager
    def invoking(tool: BaseTool, tool_input: Any, call_id: str | None) -> Iterator[list[Any]]:
        """Around LangChain's ``run``/``arun``: ``_run`` claims as this invocation; an early
        abort becomes the tool's output; any other failure releases the early result."""
        outcome: list[Any] = []
        token = _CURRENT.set((call_id, _claim_args(tool, tool_input)))
        try:
            yield outcome
        except EarlyAbort as exc:
            outcome.append(_abort_output(exc, tool, call_id))
        except BaseException:
            release(call_id)
            raise
        finally:
            _CURRENT.reset(token)

    class Partial(base):  # type: ignore[valid-type,misc]
        conveyor_spec: ClassVar[ToolSpec] = spec

        def run(self, tool_input: Any, *args: Any, tool_call_id: str | None = None,
                **kwargs: Any) -> Any:
            sched = resolve_scheduler(owner)
            if sched.aborted(tool_call_id):   # before validation: its arguments are partial
                try:
                    sched.claim(tool_call_id, spec=spec)
                except EarlyAbort as exc:
                    return done(_abort_output(exc, self, tool_call_id), tool_call_id)
            with invoking(self, tool_input, tool_call_id) as outcome:
                outcome.append(super().run(tool_input, *args, tool_call_id=tool_call_id,
                                           **kwargs))
            return done(outcome[-1], tool_call_id)

        async def arun(self, tool_input: Any, *args: Any, tool_call_id: str | None = None,
                       **kwargs: Any) -> Any:
            sched = resolve_scheduler(owner)
            if sched.aborted(tool_call_id):
                try:
                    await sched.aclaim(tool_call_id, spec=spec)
                except EarlyAbort as exc:
                    return done(_abort_output(exc, self, tool_call_id), tool_call_id)
            with invoking(self, tool_input, tool_call_id) as outcome:
                outcome.append(await super().arun(tool_input, *args, tool_call_id=tool_call_id,
                                                  **kwargs))
            return done(outcome[-1], tool_call_id)

        def _run(self, *args: Any, config: RunnableConfig,
                 run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any) -> Any:
            current = _CURRENT.get()
            if current is not None and current[0] is not None:
                sched = resolve_scheduler(owner)
                with claims() as late:
                    try:
                        found, value = sched.claim(current[0], args=current[1], spec=spec)
                    except BaseException as exc:
                        if late:
                            dispatch(run_manager, late_events(late, exc, sched.timing))
                        raise
                if late and found:
                    dispatch(run_manager, late_events(late, None, sched.timing))
                if found:
                    return value
            sched = resolve_scheduler(owner)
            executor = executor_of(spec, sched.executor)
            if executor is not None and not args:   # where the tool's work runs, now too
                return sched.submit(executor.run(spec, spec.tool_args(kwargs))).result()
            return super()._run(*args, **kwargs, **_forward(base_run_params, config, run_manager))

        async def _arun(self, *args: Any, config: RunnableConfig,
                        run_manager: AsyncCallbackManagerForToolRun | None = None,
                        **kwargs: Any) -> Any:
            current = _CURRENT.get()
            if current is not None and current[0] is not None:
                sched = resolve_scheduler(owner)
                with claims() as late:
                    try:
                        found, value = await sched.aclaim(current[0], args=current[1], spec=spec)
                    except BaseException as exc:
                        if late:
                            await adispatch(run_manager, late_events(late, exc, sched.timing))
                        raise
                if late and found:
                    await adispatch(run_manager, late_events(late, None, sched.timing))
                if found:
                    return value
            executor = executor_of(spec, resolve_scheduler(owner).executor)
            if executor is not None and not args:
                return await executor.run(spec, spec.tool_args(kwargs))
            return await super()._arun(*args, **kwargs,
                                       **_forward(base_arun_params, config, run_manager))

    Partial.__name__ = Partial.__qualname__ = base.__name__
    return Partial


def wrap_langchain_tool(tool: BaseTool, scheduler: Scheduler | None = None,
                        **options: Any) -> BaseTool:
    """``partial_tool`` for a LangChain ``BaseTool``: a copy that claims its early results."""
    if not isinstance(tool, BaseTool):
        raise TypeError(f"expected a LangChain BaseTool, got {type(tool).__name__}")
    base = type(tool)
    if getattr(base, "conveyor_spec", None) is not None:
        base = base.__mro__[1]  # re-decorated: a new spec over the original class
    run, is_async = _early_runner(tool)
    fields, defaults = schema_fields(tool.args_schema)
    if options.get("read_only") is None:      # an MCP tool says so in its annotations
        options["read_only"] = _mcp_read_only(tool)
    spec = spec_for_callable(tool.name, keyword_view(run, fields, defaults), run=run,
                             fields=fields, defaults=defaults, is_async=is_async, **options)
    wrapped = tool.model_copy()
    object.__setattr__(wrapped, "__class__", _partial_class(base, spec, scheduler))
    return wrapped


def _mcp_read_only(tool: BaseTool) -> bool:
    """An MCP tool (langchain-mcp-adapters puts its annotations in ``metadata``) whose
    ``readOnlyHint`` is true; any other tool: False."""
    metadata = tool.metadata or {}
    return metadata.get("readOnlyHint") is True
