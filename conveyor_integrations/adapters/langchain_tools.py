"""LangChain tools that hand over their early result instead of running twice.

``partial_tool(tool)`` on a LangChain ``BaseTool`` (``@tool`` functions and ``StructuredTool``
included) returns an instance of a subclass of the tool's own class, with the same name,
description and args schema. When a framework invokes it with a tool call (``ToolNode``,
``create_agent``, ``tool.invoke(tool_call)``), ``_run``/``_arun`` first claim the early result for
that call id; with none, the tool runs as usual. Everything else (callbacks, validation, error
handling, ``ToolMessage`` formatting) stays LangChain's own. Example::

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
from contextvars import ContextVar
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool

from ..errors import EarlyAbort
from ..partial import ToolSpec, spec_for_function
from ..scheduler import Scheduler

__all__ = ["wrap_langchain_tool"]

# (tool call id, arguments as the framework passed them) of the invocation in progress
_CURRENT: ContextVar[tuple[str | None, Any] | None] = ContextVar("conveyor_lc_call", default=None)
_CLASSES: dict[tuple[type, int], type] = {}


def _early_runner(inner: BaseTool) -> tuple[Any, bool]:
    """A callable(args) that does what ``inner._run``/``_arun`` would, and whether it is async."""
    params = inspect.signature(inner._run).parameters

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


def _partial_class(base: type[BaseTool], sched: Scheduler) -> type[BaseTool]:
    key = (base, id(sched))
    if key in _CLASSES:
        return _CLASSES[key]
    base_run_params = inspect.signature(base._run).parameters
    base_arun_params = inspect.signature(base._arun).parameters

    def forward(params: Any, config: Any, run_manager: Any) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if "config" in params:
            kw["config"] = config
        if "run_manager" in params:
            kw["run_manager"] = run_manager
        return kw

    def _release_unclaimed(call_id: str | None) -> None:
        # invoked, but the early result was not taken (e.g. the arguments failed the schema
        # before _run): nobody will claim it now, so stop its work instead of waiting for expiry
        if call_id is not None:
            sched.release(call_id, "the framework invoked the tool without using its early result")

    class Partial(base):  # type: ignore[valid-type,misc]
        conveyor_scheduler: ClassVar[Scheduler] = sched

        def run(self, tool_input: Any, *args: Any, tool_call_id: str | None = None,
                **kwargs: Any) -> Any:
            if sched.aborted(tool_call_id):   # before validation: its arguments are partial
                try:
                    sched.claim(tool_call_id)
                except EarlyAbort as exc:
                    return _abort_output(exc, self, tool_call_id)
            token = _CURRENT.set((tool_call_id, _claim_args(self, tool_input)))
            try:
                return super().run(tool_input, *args, tool_call_id=tool_call_id, **kwargs)
            except EarlyAbort as exc:
                return _abort_output(exc, self, tool_call_id)
            finally:
                _CURRENT.reset(token)
                _release_unclaimed(tool_call_id)

        async def arun(self, tool_input: Any, *args: Any, tool_call_id: str | None = None,
                       **kwargs: Any) -> Any:
            if sched.aborted(tool_call_id):
                try:
                    await sched.aclaim(tool_call_id)
                except EarlyAbort as exc:
                    return _abort_output(exc, self, tool_call_id)
            token = _CURRENT.set((tool_call_id, _claim_args(self, tool_input)))
            try:
                return await super().arun(tool_input, *args, tool_call_id=tool_call_id, **kwargs)
            except EarlyAbort as exc:
                return _abort_output(exc, self, tool_call_id)
            finally:
                _CURRENT.reset(token)
                _release_unclaimed(tool_call_id)

        def _run(self, *args: Any, config: RunnableConfig,
                 run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any) -> Any:
            current = _CURRENT.get()
            if current is not None and current[0] is not None:
                found, value = sched.claim(current[0], args=current[1])
                if found:
                    return value
            return super()._run(*args, **kwargs, **forward(base_run_params, config, run_manager))

        async def _arun(self, *args: Any, config: RunnableConfig,
                        run_manager: AsyncCallbackManagerForToolRun | None = None,
                        **kwargs: Any) -> Any:
            current = _CURRENT.get()
            if current is not None and current[0] is not None:
                found, value = await sched.aclaim(current[0], args=current[1])
                if found:
                    return value
            return await super()._arun(*args, **kwargs,
                                       **forward(base_arun_params, config, run_manager))

    Partial.__name__ = Partial.__qualname__ = base.__name__
    _CLASSES[key] = Partial
    return Partial


def wrap_langchain_tool(tool: BaseTool, sched: Scheduler, **kwargs: Any) -> BaseTool:
    """``partial_tool`` for a LangChain ``BaseTool``: register it and return the claiming copy."""
    if not isinstance(tool, BaseTool):
        raise TypeError(f"expected a LangChain BaseTool, got {type(tool).__name__}")
    base = type(tool)
    if getattr(base, "conveyor_scheduler", None) is not None:
        base = base.__mro__[1]  # already wrapped: re-register with the new strategy
    run, is_async = _early_runner(tool)
    plain = spec_for_function(tool.name, _kwargs_fn(tool, run), **kwargs)
    spec = ToolSpec(name=plain.name, make_execution=plain.make_execution, run=run,
                    streams=plain.streams, side_effects=plain.side_effects,
                    timeout=plain.timeout, is_async=is_async)
    sched.register(spec)
    wrapped = tool.model_copy()
    object.__setattr__(wrapped, "__class__", _partial_class(base, sched))
    return wrapped


def _kwargs_fn(tool: BaseTool, run: Any) -> Any:
    """A keyword-argument view of ``run(args)`` whose signature carries the schema's defaults,
    so that early and final arguments compare with defaults filled in."""

    def call(**kw: Any) -> Any:
        return run(kw)

    params = []
    schema = tool.args_schema
    fields = getattr(schema, "model_fields", None)
    if isinstance(fields, dict):
        for name, info in fields.items():
            default = inspect.Parameter.empty if info.is_required() else info.get_default(
                call_default_factory=True)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                            default=default))
        call.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return call
