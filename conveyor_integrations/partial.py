"""The tool developer's interface: the ``PartialExecution`` protocol and ``@partial_tool``.

Conveyor's tools implement ``post_init()``, ``process_new_dat(data)`` and ``finish()``; ours are
``start(call)``, ``feed(event)``, ``finish(args)`` and ``cancel()``, all async. Raising
:class:`~conveyor_integrations.errors.EarlyAbort` from ``start`` or ``feed`` stops decoding.

Most users never implement it: they put ``@partial_tool(...)`` on a tool they already have::

    >>> from conveyor_integrations import partial_tool
    >>> @partial_tool(start_on=["query"])
    ... def web_search(query: str, k: int = 5) -> str:
    ...     return f"results for {query}"
    >>> web_search("x")
    'results for x'

The decorated object is the same kind of object as the one given (a function stays a function;
LangChain and LlamaIndex tools are handled by their adapters), and it is registered with the
process-wide default scheduler under the tool's name.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from .errors import EarlyAbort
from .events import CallStarted, FieldDone, ItemDone, TextChunk
from .strategies import CompleteCall, EachItem, Runner, StartOn, StreamPieces, normalizer_for

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["EarlyAbort", "PartialExecution", "ToolSpec", "partial_tool", "spec_for_function"]

T = TypeVar("T")


@runtime_checkable
class PartialExecution(Protocol):
    """One execution of a tool over one call, fed as the call is decoded.

    Example, a validator that stops decoding at the first negative number::

        class NonNegative:
            async def start(self, call): pass
            async def feed(self, event):
                if isinstance(event, FieldDone) and isinstance(event.value, int) and event.value < 0:
                    raise EarlyAbort(f"{event.path[-1]} must be >= 0")
            async def finish(self, args): return "ok"
            async def cancel(self): pass
    """

    async def start(self, call: CallStarted) -> None:
        """The call began; its id and tool name are known."""
        ...

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        """A part of the arguments is final. Raise ``EarlyAbort(msg)`` to stop decoding."""
        ...

    async def finish(self, args: dict[str, Any]) -> Any:
        """The call is complete with ``args``; return the tool's result."""
        ...

    async def cancel(self) -> None:
        """Stop all work and release threads and processes; the result will never be used."""
        ...


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """How the scheduler executes one registered tool early. Built by ``partial_tool``."""

    name: str
    """The tool's name, as the model calls it."""
    make_execution: Callable[[Runner], PartialExecution]
    """Builds a fresh execution for one call, given a runner of the whole tool."""
    run: Callable[[dict[str, Any]], Any]
    """Runs the tool on complete arguments (a plain or async callable taking one dict)."""
    streams: dict[str, str] = field(default_factory=dict)
    """String fields to stream as pieces, field -> unit ("line" | "statement")."""
    side_effects: bool = False
    """Never run on a prefix; only on the complete call, and never when approval is required."""
    timeout: float | None = None
    """Seconds each step (start, feed, finish) may take before the execution is cancelled."""
    is_async: bool = False
    """``run`` returns an awaitable (run on the scheduler's loop, not its thread pool)."""


def _strategy(
    run_fn: Callable[..., Any] | None,
    *,
    start_on: Sequence[str] | None,
    stream: str | None,
    items: str | None,
    execution: Callable[[], PartialExecution] | None,
    side_effects: bool,
) -> Callable[[Runner], PartialExecution]:
    chosen = [k for k, v in (("start_on", start_on), ("stream", stream), ("items", items))
              if v is not None]
    if len(chosen) > 1 or (execution is not None and start_on is not None):
        raise TypeError("partial_tool: choose one of start_on, stream, items (execution= may "
                        f"come with stream= or items=, which then say what it is fed); got {chosen}")
    normalize = normalizer_for(run_fn)
    if side_effects:
        return CompleteCall
    if execution is not None:
        factory = execution
        return lambda run: factory()
    if stream is not None:
        return lambda run: StreamPieces(run, stream, normalize)
    if items is not None:
        return lambda run: EachItem(run, items, normalize)
    fields = list(start_on) if start_on is not None else []
    return lambda run: StartOn(run, fields, normalize)


def spec_for_function(
    name: str,
    fn: Callable[..., Any],
    *,
    start_on: Sequence[str] | None = None,
    stream: str | None = None,
    unit: str = "line",
    items: str | None = None,
    execution: Callable[[], PartialExecution] | None = None,
    side_effects: bool = False,
    timeout: float | None = None,
) -> ToolSpec:
    """The :class:`ToolSpec` of a function called with keyword arguments (adapters use it too)."""
    if unit not in ("line", "statement", "raw"):
        raise ValueError(f"unit must be 'line', 'statement' or 'raw', not {unit!r}")
    if side_effects and (start_on or stream or items or execution):
        raise TypeError("side_effects=True tools run only on the complete call; drop the strategy")

    def run(args: dict[str, Any]) -> Any:
        return fn(**args)

    make = _strategy(fn, start_on=start_on, stream=stream, items=items, execution=execution,
                     side_effects=side_effects)
    return ToolSpec(
        name=name,
        make_execution=make,
        run=run,
        streams={stream: unit} if stream is not None else {},
        side_effects=side_effects,
        timeout=timeout,
        is_async=inspect.iscoroutinefunction(fn),
    )


def partial_tool(
    tool: Any = None,
    *,
    start_on: Sequence[str] | None = None,
    stream: str | None = None,
    unit: str = "line",
    items: str | None = None,
    execution: Callable[[], PartialExecution] | None = None,
    side_effects: bool = False,
    timeout: float | None = None,
    scheduler: Scheduler | None = None,
) -> Any:
    """Let ``tool`` start on the part of its call that is already decoded.

    Takes a plain function (sync or async), a LangChain ``BaseTool`` or a LlamaIndex
    ``FunctionTool`` and returns the same kind of object; usable bare, with keywords, or as a call::

        @partial_tool(stream="code", unit="statement", execution=PythonExecution)
        def run_python(code: str) -> str: ...

        fast = partial_tool(existing_tool, start_on=["url"])

    With no strategy keyword the tool runs as soon as its call has begun (``start_on=[]``): useful
    for tools without arguments. ``side_effects=True`` tools run only on the complete call.
    """
    kwargs: dict[str, Any] = {"start_on": start_on, "stream": stream, "unit": unit,
                              "items": items, "execution": execution,
                              "side_effects": side_effects, "timeout": timeout}

    def wrap(obj: Any) -> Any:
        from .scheduler import default_scheduler

        sched = scheduler if scheduler is not None else default_scheduler()
        modules = [c.__module__ for c in type(obj).__mro__]
        if any(m.startswith(("langchain", "langgraph")) for m in modules):
            from .adapters.langchain import wrap_langchain_tool

            return wrap_langchain_tool(obj, sched, **kwargs)
        if any(m.startswith("llama_index") for m in modules):
            from .adapters.llamaindex import wrap_llamaindex_tool

            return wrap_llamaindex_tool(obj, sched, **kwargs)
        if not callable(obj):
            raise TypeError(f"partial_tool expects a function or a tool object, not {obj!r}")
        return _wrap_function(obj, sched, **kwargs)

    return wrap if tool is None else wrap(tool)


def _wrap_function(fn: Callable[..., Any], sched: Scheduler, **kwargs: Any) -> Callable[..., Any]:
    name = getattr(fn, "__name__", type(fn).__name__)
    spec = spec_for_function(name, fn, **kwargs)
    sched.register(spec)
    sig = inspect.signature(fn)

    def as_args(a: tuple[Any, ...], kw: dict[str, Any]) -> dict[str, Any]:
        return dict(sig.bind(*a, **kw).arguments)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*a: Any, **kw: Any) -> Any:
            found, value = await sched.aclaim(name=name, args=as_args(a, kw))
            return value if found else await fn(*a, **kw)

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(fn)
        def sync_wrapper(*a: Any, **kw: Any) -> Any:
            found, value = sched.claim(name=name, args=as_args(a, kw))
            return value if found else fn(*a, **kw)

        wrapper = sync_wrapper
    wrapper.conveyor_spec = spec  # type: ignore[attr-defined]
    wrapper.conveyor_scheduler = sched  # type: ignore[attr-defined]
    return wrapper
