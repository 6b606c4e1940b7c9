"""The tool spec: what ``@partial_tool`` knows about one tool, checked when it is decorated.

A :class:`ToolSpec` is made once per decorated tool object and travels *on* that object
(``tool.conveyor_spec``). A request starts early only the specs of the tool objects the agent
bound to it (see :mod:`~conveyor_integrations.policy`), so the spec's identity is the tool's
identity: two tools with one name are two specs, and nothing is looked up by name across the
process. Options are checked against the tool's own fields here, so a misspelt field is an error
at decoration time, not an early start that never happens. Example::

    >>> spec = spec_for_callable("search", lambda query, k=3: query, start_on=["query"])
    >>> spec.name, sorted(spec.fields or ())
    ('search', ['k', 'query'])
    >>> spec.tool_args({"query": "x", "junk": 1})      # as the tool will see them
    {'k': 3, 'query': 'x'}
    >>> spec_for_callable("search", lambda query: query, start_on=["town"])
    Traceback (most recent call last):
    ...
    ValueError: partial_tool(start_on=...): tool 'search' has no field 'town'; its fields are ['query']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .events import CallStarted, FieldDone, ItemDone, TextChunk
from .strategies import Combine, Runner, strategy_factory

__all__ = ["PartialExecution", "Runner", "ToolExecutor", "ToolSpec", "fields_of", "spec_for_callable",
           "spec_of"]

_UNITS = ("line", "statement", "raw")


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


@runtime_checkable
class ToolExecutor(Protocol):
    """Runs tool work away from the loop that drives the model's stream.

    By default a tool's early work runs in the agent's process. An executor moves it elsewhere,
    for one tool (``partial_tool(..., executor=...)``) or for every tool with a synchronous body
    that a scheduler starts (``Scheduler(executor=...)``); results still come back here and are
    handed over once. :class:`~conveyor_integrations.executors.RayExecutor` is the one shipped.
    """

    def check(self, spec: ToolSpec) -> None:
        """Raise a clear error now (decoration or binding time) if ``spec`` cannot run here."""
        ...

    async def run(self, spec: ToolSpec, args: dict[str, Any]) -> Any:
        """Run the tool's body once on ``args`` and return its result (or raise its error)."""
        ...

    def execution(self, spec: ToolSpec) -> PartialExecution | None:
        """A fresh execution of one call that runs elsewhere and is fed the call's pieces in
        order, or None to keep the tool's strategy here (its body then runs through ``run``)."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class ToolSpec:
    """How one decorated tool is executed early. Built by ``partial_tool``; compared by identity."""

    name: str
    """The tool's name, as the model calls it."""
    make_execution: Callable[[Runner], PartialExecution]
    """Builds a fresh execution for one call, given a runner of the whole tool."""
    run: Callable[[dict[str, Any]], Any]
    """Runs the tool's body on complete arguments (a plain or async callable taking one dict)."""
    fields: frozenset[str] | None = None
    """The tool's argument names, or None when it takes any (``**kwargs``)."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Defaults of the optional arguments (filled in to compare early and final arguments)."""
    streams: Mapping[str, str] = field(default_factory=dict)
    """String fields to stream as pieces, field -> unit ("line" | "statement" | "raw")."""
    side_effects: bool = False
    """Never run on a prefix: only on the complete call, where the request allows it."""
    timeout: float | None = None
    """Seconds each step (start, feed, finish) may take before the execution is cancelled."""
    is_async: bool = False
    """``run`` returns an awaitable: it runs on the loop that drives the model's stream."""
    custom: bool = False
    """``make_execution`` is the user's own: it works from ``start()`` on, so its time counts."""
    starts_on: tuple[str, tuple[str, ...]] = ("start_on", ())
    """When it can start, as decorated: ``("start_on", fields)``, ``("stream", (field,))``,
    ``("items", (field,))``, ``("custom", ())`` (its own execution, fed every event) or
    ``("complete", ())`` (``side_effects=True``); what
    ``conveyor analyze`` estimates it from."""
    executor: ToolExecutor | None = None
    """Where its work runs when not in the agent's process (``partial_tool(executor=...)``)."""
    read_only: bool = False
    """Running it changes nothing: it may be run speculatively, before the model writes it
    (:mod:`~conveyor_integrations.speculation`)."""
    follow_up: Callable[[dict[str, Any], Any], Any] | None = None
    """``follow_up(args, result)``: the calls likely to come next (``Prediction`` s), started
    speculatively when they are read-only tools of the request."""

    def tool_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``args`` as the tool will see them: fields it does not take dropped, defaults filled.

        Frameworks drop fields outside the tool's schema before they call it, so an early run and
        the final call are compared (and run) on this form.
        """
        if self.fields is None:
            return {**self.defaults, **args}
        out = dict(self.defaults)
        for k, v in args.items():
            if k in self.fields:
                out[k] = v
        return out


def spec_of(tool: Any) -> ToolSpec | None:
    """The spec that ``partial_tool`` put on ``tool``, or None for an undecorated tool.

    A framework tool made from a decorated function (``StructuredTool.from_function(f)``,
    ``FunctionTool.from_defaults(fn=f)``) has ``f``'s spec when it keeps ``f``'s name: ``f``
    itself claims its early result when the framework calls it.
    """
    spec = getattr(tool, "conveyor_spec", None)
    if isinstance(spec, ToolSpec):
        return spec
    for attr in ("func", "coroutine", "real_fn"):
        inner = getattr(tool, attr, None)
        spec = getattr(inner, "conveyor_spec", None) if inner is not None else None
        if isinstance(spec, ToolSpec) and _tool_name(tool) in (None, spec.name):
            return spec
    return None


def _tool_name(tool: Any) -> str | None:
    name = getattr(tool, "name", None)
    if isinstance(name, str):
        return name
    metadata = getattr(tool, "metadata", None)
    name = getattr(metadata, "name", None)
    return name if isinstance(name, str) else None


def fields_of(fn: Callable[..., Any]) -> tuple[frozenset[str] | None, dict[str, Any]]:
    """A callable's argument names (None with ``**kwargs``) and its defaults."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None, {}
    params = sig.parameters.values()
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = None if any(p.kind is p.VAR_KEYWORD for p in params) else frozenset(
        p.name for p in named)
    return names, {p.name: p.default for p in named if p.default is not p.empty}


def _check_fields(tool: str, option: str, wanted: Sequence[str],
                  fields: frozenset[str] | None) -> None:
    if fields is None:
        return
    for name in wanted:
        if name not in fields:
            raise ValueError(f"partial_tool({option}=...): tool {tool!r} has no field {name!r}; "
                             f"its fields are {sorted(fields)}")


def spec_for_callable(
    name: str,
    run_kwargs: Callable[..., Any],
    *,
    run: Callable[[dict[str, Any]], Any] | None = None,
    fields: frozenset[str] | None | bool = True,
    defaults: Mapping[str, Any] | None = None,
    is_async: bool | None = None,
    start_on: Sequence[str] | None = None,
    stream: str | None = None,
    unit: str = "line",
    items: str | None = None,
    combine: Combine | None = None,
    execution: Callable[[], PartialExecution] | None = None,
    side_effects: bool = False,
    timeout: float | None = None,
    executor: ToolExecutor | None = None,
    read_only: bool = False,
    follow_up: Callable[[dict[str, Any], Any], Any] | None = None,
) -> ToolSpec:
    """Check ``partial_tool``'s options against the tool and build its :class:`ToolSpec`.

    ``run_kwargs`` is the tool's body called with keyword arguments; adapters pass ``run`` (one
    dict), ``fields``/``defaults`` (from the tool's schema) and ``is_async`` when they know better
    than the signature.
    """
    if not name or name.startswith("<"):
        raise ValueError(f"partial_tool: a tool named {name!r} cannot be told apart from others "
                         "(every lambda is '<lambda>'): use a def, or give the tool a name")
    if isinstance(start_on, str):
        raise TypeError(f"partial_tool(start_on=...) takes a list of field names, not the string "
                        f"{start_on!r}; write start_on=[{start_on!r}]")
    if unit not in _UNITS:
        raise ValueError(f"unit must be one of {', '.join(map(repr, _UNITS))}, not {unit!r}")
    chosen = [k for k, v in (("start_on", start_on), ("stream", stream), ("items", items))
              if v is not None]
    if len(chosen) > 1 or (execution is not None and start_on is not None):
        raise TypeError("partial_tool: choose one of start_on, stream, items (execution= may "
                        f"come with stream= or items=, which then say what it is fed); got {chosen}")
    if side_effects and (chosen or execution is not None):
        raise TypeError("side_effects=True tools run only on the complete call; drop the strategy")
    if (stream is not None or items is not None) and execution is None and combine is None:
        option = "stream" if stream is not None else "items"
        raise TypeError(f"partial_tool({option}=...) runs the tool once per piece; give combine="
                        "(a function of the list of per-piece results that returns what the tool "
                        "returns for the whole call) or execution=, so that the agent sees exactly "
                        "what the undecorated tool returns")
    if combine is not None and stream is None and items is None:
        raise TypeError("combine= goes with stream= or items=")
    if read_only and side_effects:
        raise TypeError(f"partial_tool: tool {name!r} cannot be both read_only=True and "
                        "side_effects=True")
    if follow_up is not None and not callable(follow_up):
        raise TypeError(f"partial_tool(follow_up=...) takes a function of (args, result) that "
                        f"returns the likely next calls, not {follow_up!r}")
    sig_fields, sig_defaults = fields_of(run_kwargs)
    names = sig_fields if fields is True else (fields or None)
    _check_fields(name, "start_on", list(start_on or ()), names)
    _check_fields(name, "stream", [stream] if stream else [], names)
    _check_fields(name, "items", [items] if items else [], names)
    if run is None:
        def run(args: dict[str, Any]) -> Any:
            return run_kwargs(**args)
    spec = ToolSpec(
        name=name,
        make_execution=strategy_factory(start_on=start_on, stream=stream, items=items,
                                        combine=combine, execution=execution,
                                        side_effects=side_effects),
        run=run,
        fields=names,
        defaults=dict(sig_defaults if defaults is None else defaults),
        streams={stream: unit} if stream is not None else {},
        side_effects=side_effects,
        timeout=timeout,
        is_async=inspect.iscoroutinefunction(run_kwargs) if is_async is None else is_async,
        custom=execution is not None,
        starts_on=(("complete", ()) if side_effects else ("stream", (stream,)) if stream
                   else ("items", (items,)) if items else ("custom", ()) if execution
                   else ("start_on", tuple(start_on or ()))),
        executor=executor,
        read_only=bool(read_only),
        follow_up=follow_up,
    )
    if executor is not None:
        executor.check(spec)     # e.g. a body Ray cannot ship: an error now, not at its call
    return spec
