"""The demo's start display: one row per stage, with what is happening and its elapsed time.

Each stage (converting the bundled model on the first run, starting the vLLM engine) is a row
of a ``rich`` progress display: a spinner while it runs, then ✓ or ✗, its description, seconds
elapsed, and a detail line the work may update from any thread. The rows stay on screen when
the display stops (on a terminal they are redrawn in place; elsewhere, a log file or a test's
capture, they are written once at the end). Example::

    >>> import asyncio, io
    >>> from rich.console import Console
    >>> console = Console(file=io.StringIO(), width=80)
    >>> async def start(stage: Stage) -> str:
    ...     stage.detail("loading weights")
    ...     return "ready"
    >>> async def main() -> str:
    ...     with StartProgress(console) as progress:
    ...         return await progress.run("starting the engine", start)
    >>> asyncio.run(main())
    'ready'
    >>> "✓ starting the engine" in console.file.getvalue()
    True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from rich.markup import escape
from rich.progress import Progress, ProgressColumn, TaskID, TextColumn
from rich.spinner import Spinner
from rich.table import Column
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.progress import Task

__all__ = ["Stage", "StartProgress"]

T = TypeVar("T")


class _StateColumn(ProgressColumn):
    """A spinner while the stage runs, then ✓ (done) or ✗ (failed)."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True))
        self._spinner = Spinner("dots", style="cyan")

    def render(self, task: Task) -> RenderableType:
        state = task.fields.get("state")
        if state == "ok":
            return Text("✓", style="green")
        if state == "failed":
            return Text("✗", style="bold red")
        return self._spinner.render(task.get_time())


class _SecondsColumn(ProgressColumn):
    """Seconds since the stage began (frozen when it ends), as ``12.3 s``."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True))

    def render(self, task: Task) -> RenderableType:
        elapsed = task.elapsed or 0.0
        return Text(f"{elapsed:5.1f} s", style="bold" if task.finished else "")


class _DetailColumn(ProgressColumn):
    """The stage's detail, on one line: the column narrowed first, cut with an ellipsis."""

    def render(self, task: Task) -> RenderableType:
        return Text(str(task.fields.get("detail", "")), style="dim", no_wrap=True,
                    overflow="ellipsis")


class Stage:
    """One row of a :class:`StartProgress`; its methods may be called from any thread."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress, self._task = progress, task
        self.started = time.perf_counter()
        self.seconds: float | None = None
        """How long the stage took (set when it ends)."""
        self.notes: list[str] = []
        """Every detail the work reported, in order."""
        self._lock = threading.Lock()

    def detail(self, text: str) -> None:
        """Say what the stage is doing now (shown dimmed after the elapsed time)."""
        with self._lock:
            self.notes.append(text)
        self._progress.update(self._task, detail=text)

    def describe(self, text: str) -> None:
        """Rename the stage (e.g. once it is known that the model must be converted)."""
        self._progress.update(self._task, description=escape(text))

    def _end(self, state: str, detail: str | None) -> None:
        self.seconds = time.perf_counter() - self.started
        fields: dict[str, Any] = {"state": state}
        if detail is not None:
            fields["detail"] = detail
        self._progress.update(self._task, completed=1, **fields)
        self._progress.stop_task(self._task)


class StartProgress:
    """The start stages of ``conveyor demo`` on ``console``, as a ``with`` block.

    ``redirect``: let rich show Python-level prints above the display (off by default: the demo
    keeps other libraries' output in a log, see :mod:`~conveyor_integrations.demo_quiet`).
    """

    def __init__(self, console: Console, *, redirect: bool = False,
                 refresh_per_second: float = 8) -> None:
        self.console = console
        self.stages: list[Stage] = []
        self._progress = Progress(
            _StateColumn(), TextColumn("{task.description}", table_column=Column(no_wrap=True)),
            _SecondsColumn(), _DetailColumn(),
            console=console, transient=False, redirect_stdout=redirect,
            redirect_stderr=redirect, refresh_per_second=refresh_per_second)

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    async def run(self, description: str, work: Callable[[Stage], Awaitable[T]], *,
                  detail: str = "", done: str | None = None) -> T:
        """Show ``description`` while ``await work(stage)`` runs; mark the row ✓ or ✗.

        ``detail`` is shown until the work reports its own; ``done`` replaces it at the end.
        A failure shows its message as the detail and propagates.
        """
        task = self._progress.add_task(escape(description), total=1, detail=detail,
                                       state="running")
        stage = Stage(self._progress, task)
        self.stages.append(stage)
        try:
            result = await work(stage)
        except BaseException as exc:
            stage._end("failed", " ".join(f"failed: {type(exc).__name__}: {exc}".split())[:200])
            raise
        stage._end("ok", done)
        return result
