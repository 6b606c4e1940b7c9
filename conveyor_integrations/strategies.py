"""The built-in ways of executing a tool on a partial call.

Each class implements :class:`~conveyor_integrations.spec.PartialExecution` over a *runner*, an
async callable that runs the wrapped tool's body on a dict of arguments. ``partial_tool`` picks one
from its keywords:

* ``start_on=[fields]``        -> :class:`StartOn`: the whole tool, as soon as those fields are final;
* ``stream=field, combine=f``  -> :class:`StreamPieces`: the tool on each piece, in order;
* ``items=field, combine=f``   -> :class:`EachItem`: the tool on each list element, concurrently;
* ``side_effects=True``        -> :class:`CompleteCall`: only on the complete call.

``combine`` turns the per-piece results into what the tool returns for the whole call, so the
agent sees exactly what the undecorated tool would return. The arguments compared and run are
those the tool will see (``ToolSpec.tool_args``: unknown fields dropped, defaults filled). When
the complete arguments show that early work was done on other arguments, it is cancelled and the
tool runs once more on the complete arguments (the runner's ``restart`` marks the timings).

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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from .events import CallStarted, FieldDone, ItemDone, TextChunk

__all__ = ["Combine", "CompleteCall", "EachItem", "Runner", "StartOn", "StreamPieces",
           "strategy_factory"]

Runner: TypeAlias = Callable[[dict[str, Any]], Awaitable[Any]]
"""Runs the wrapped tool's body on a dict of arguments (given to the built-in strategies)."""
Combine: TypeAlias = Callable[[list[Any]], Any]
"""Per-piece results -> the tool's result for the whole call."""
_Normalize: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]


def _identity(args: dict[str, Any]) -> dict[str, Any]:
    return args


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


def _normalizer(run: Runner) -> _Normalize:
    spec = getattr(run, "spec", None)
    return spec.tool_args if spec is not None else _identity


class StartOn:
    """Run the whole tool once the fields in ``fields`` are final (defaults for the rest)."""

    def __init__(self, run: Runner, fields: Sequence[str]):
        self._run, self._fields, self._normalize = run, tuple(fields), _normalizer(run)
        self._seen: dict[str, Any] = {}
        self._task: asyncio.Task[Any] | None = None
        self.early_args: dict[str, Any] | None = None

    async def start(self, call: CallStarted) -> None:
        if not self._fields:
            self._launch()

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        if (self._task is None and isinstance(event, FieldDone) and len(event.path) == 1
                and event.path[0] in self._fields):
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


class _Pieces:
    """Shared by the piece strategies: tasks per piece, combined at the end if nothing differs."""

    def __init__(self, run: Runner, field: str, combine: Combine):
        self._run, self._field, self._combine = run, field, combine
        self._normalize = _normalizer(run)
        self._tasks: list[asyncio.Task[Any]] = []

    def _same(self, args: dict[str, Any], value: Any) -> bool:
        return self._normalize(args) == self._normalize({self._field: value})

    async def _finish(self, args: dict[str, Any], value: Any) -> Any:
        if self._tasks and args.get(self._field) == value and self._same(args, value):
            return self._combine(list(await asyncio.gather(*self._tasks)))
        await _cancel_tasks(self._tasks)
        return await (_restarting(self._run) if self._tasks else self._run)(args)

    async def start(self, call: CallStarted) -> None:
        return None

    async def cancel(self) -> None:
        await _cancel_tasks(self._tasks)


class StreamPieces(_Pieces):
    """Run the tool on each complete piece of string field ``field``, one after another."""

    def __init__(self, run: Runner, field: str, combine: Combine):
        super().__init__(run, field, combine)
        self._tail: asyncio.Task[Any] | None = None
        self._pieces: list[str] = []

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
        return await self._finish(args, "".join(self._pieces))


class EachItem(_Pieces):
    """Run the tool on each element of list field ``field`` as soon as it is final, concurrently."""

    def __init__(self, run: Runner, field: str, combine: Combine):
        super().__init__(run, field, combine)
        self._items: list[Any] = []

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        if isinstance(event, ItemDone) and event.path == (self._field,):
            self._items.append(event.value)
            self._tasks.append(asyncio.ensure_future(self._run({self._field: [event.value]})))

    async def finish(self, args: dict[str, Any]) -> Any:
        return await self._finish(args, self._items)


class CompleteCall:
    """Run the tool only on the complete call (``side_effects=True`` tools, complete-call mode)."""

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


def strategy_factory(*, start_on: Sequence[str] | None, stream: str | None, items: str | None,
                     combine: Combine | None, execution: Callable[[], Any] | None,
                     side_effects: bool) -> Callable[[Runner], Any]:
    """The ``make_execution`` of a spec: a fresh execution per call, given the tool's runner."""
    if side_effects:
        return CompleteCall
    if execution is not None:
        factory = execution
        return lambda run: factory()
    if stream is not None:
        assert combine is not None
        return lambda run: StreamPieces(run, stream, combine)
    if items is not None:
        assert combine is not None
        return lambda run: EachItem(run, items, combine)
    fields = list(start_on) if start_on is not None else []
    return lambda run: StartOn(run, fields)
