"""The built-in ways of executing a tool on a partial call.

Each class implements :class:`~conveyor_integrations.partial.PartialExecution` over a *runner*,
an async callable that runs the wrapped tool on a dict of arguments (on the scheduler's thread pool
when the tool is synchronous). ``partial_tool`` picks one from its keywords:

* ``start_on=[fields]`` -> :class:`StartOn`: run the whole tool as soon as those fields are final;
* ``stream=field``      -> :class:`StreamPieces`: run the tool on each piece, in order;
* ``items=field``       -> :class:`EachItem`: run the tool on each list element, concurrently;
* ``side_effects=True`` -> :class:`CompleteCall`: run only on the complete call.

Whenever the complete arguments show that the early work was done on other arguments than the
tool would have got (a field outside ``start_on`` set to a non-default value, say), the early
result is dropped and the tool runs again on the complete arguments.

Example::

    >>> import asyncio
    >>> from conveyor_integrations.events import FieldDone
    >>> async def run(args): return args["q"].upper()
    >>> async def demo():
    ...     ex = StartOn(run, ["q"])
    ...     await ex.feed(FieldDone(0, ("q",), "hi"))
    ...     return await ex.finish({"q": "hi"})
    >>> asyncio.run(demo())
    'HI'
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from .events import CallStarted, FieldDone, ItemDone, TextChunk

__all__ = ["CompleteCall", "EachItem", "Runner", "StartOn", "StreamPieces", "combine_results"]

Runner: TypeAlias = Callable[[dict[str, Any]], Awaitable[Any]]
_Normalize: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]


def _identity(args: dict[str, Any]) -> dict[str, Any]:
    return args


def normalizer_for(fn: Callable[..., Any] | None) -> _Normalize:
    """Arguments with the function's defaults filled in, to compare early and final arguments."""
    if fn is None:
        return _identity
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return _identity
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if all(p.kind in named for p in sig.parameters.values()):
        # the common case, done once per call: defaults first, the given arguments over them
        defaults = {n: p.default for n, p in sig.parameters.items()
                    if p.default is not inspect.Parameter.empty}
        return lambda args: {**defaults, **args}

    def normalize(args: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = sig.bind_partial(**args)
        except TypeError:
            return args
        bound.apply_defaults()
        return dict(bound.arguments)

    return normalize


def combine_results(results: Sequence[Any], sep: str = "") -> Any:
    """Join piece results: strings with ``sep``, lists concatenated, anything else as a list."""
    if all(isinstance(r, str) for r in results):
        return sep.join(results)
    if all(isinstance(r, list) for r in results):
        return [x for r in results for x in r]
    return list(results)


def _restarting(run: Runner) -> Runner:
    """Tell the runner the early work is void (timings then show the tool as not early)."""
    restart = getattr(run, "restart", None)
    if restart is not None:
        restart()
    return run


async def _cancel_tasks(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


class StartOn:
    """Run the whole tool once the fields in ``fields`` are final (defaults for the rest)."""

    def __init__(self, run: Runner, fields: Sequence[str], normalize: _Normalize = _identity):
        self._run, self._fields, self._normalize = run, tuple(fields), normalize
        self._seen: dict[str, Any] = {}
        self._task: asyncio.Task[Any] | None = None
        self.early_args: dict[str, Any] | None = None

    async def start(self, call: CallStarted) -> None:
        if not self._fields:
            self._launch()

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        if (
            self._task is None
            and isinstance(event, FieldDone)
            and len(event.path) == 1
            and event.path[0] in self._fields
        ):
            self._seen[str(event.path[0])] = event.value
            if len(self._seen) == len(self._fields):
                self._launch()

    def _launch(self) -> None:
        self.early_args = dict(self._seen)
        self._task = asyncio.ensure_future(self._run(self.early_args))

    async def finish(self, args: dict[str, Any]) -> Any:
        if self._task is not None and self.early_args is not None:
            if self._normalize(self.early_args) == self._normalize(args):
                return await self._task
            await _cancel_tasks([self._task])
            return await _restarting(self._run)(args)
        return await self._run(args)

    async def cancel(self) -> None:
        if self._task is not None:
            await _cancel_tasks([self._task])


class StreamPieces:
    """Run the tool on each complete piece of string field ``field``, one after another."""

    def __init__(self, run: Runner, field: str, normalize: _Normalize = _identity):
        self._run, self._field, self._normalize = run, field, normalize
        self._tail: asyncio.Task[Any] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._pieces: list[str] = []

    async def start(self, call: CallStarted) -> None:
        return None

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        if isinstance(event, TextChunk) and event.path == (self._field,):
            self._pieces.append(event.text)
            self._tail = asyncio.ensure_future(self._after(self._tail, event.text))
            self._tasks.append(self._tail)

    async def _after(self, prev: asyncio.Task[Any] | None, piece: str) -> Any:
        if prev is not None:
            await asyncio.shield(prev)
        return await self._run({self._field: piece})

    async def finish(self, args: dict[str, Any]) -> Any:
        same = "".join(self._pieces) == args.get(self._field) and self._normalize(
            {self._field: args.get(self._field)}
        ) == self._normalize(args)
        if not same or not self._tasks:
            await _cancel_tasks(self._tasks)
            return await (_restarting(self._run) if self._tasks else self._run)(args)
        return combine_results(await asyncio.gather(*self._tasks))

    async def cancel(self) -> None:
        await _cancel_tasks(self._tasks)


class EachItem:
    """Run the tool on each element of list field ``field`` as soon as it is final, concurrently."""

    def __init__(self, run: Runner, field: str, normalize: _Normalize = _identity):
        self._run, self._field, self._normalize = run, field, normalize
        self._tasks: list[asyncio.Task[Any]] = []
        self._items: list[Any] = []

    async def start(self, call: CallStarted) -> None:
        return None

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        if isinstance(event, ItemDone) and event.path == (self._field,):
            self._items.append(event.value)
            self._tasks.append(asyncio.ensure_future(self._run({self._field: [event.value]})))

    async def finish(self, args: dict[str, Any]) -> Any:
        same = args.get(self._field) == self._items and self._normalize(
            {self._field: self._items}
        ) == self._normalize(args)
        if not same or not self._tasks:
            await _cancel_tasks(self._tasks)
            return await (_restarting(self._run) if self._tasks else self._run)(args)
        return combine_results(await asyncio.gather(*self._tasks), sep="\n")

    async def cancel(self) -> None:
        await _cancel_tasks(self._tasks)


class CompleteCall:
    """Run the tool only on the complete call (``side_effects=True`` tools)."""

    def __init__(self, run: Runner):
        self._run = run

    async def start(self, call: CallStarted) -> None:
        return None

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        return None

    async def finish(self, args: dict[str, Any]) -> Any:
        return await self._run(args)

    async def cancel(self) -> None:
        return None
