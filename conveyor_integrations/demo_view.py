"""The demo's live view: the model's lines and the tool lane, on one clock, in time order.

A model line is stamped when its newline is decoded; a statement when it began running. A
statement's row is only known when it has finished, so a row is printed for good once nothing
earlier can still appear: once every statement queued before it has reported (a statement
cannot start before it was queued, nor before the one ahead of it ended). Until then rows wait
in a live tail at the bottom of a terminal, with the running statement and the line being
decoded; off a terminal (a pipe, a test's capture) only the settled rows are written, in the
same order. Example::

    >>> import io
    >>> from rich.console import Console
    >>> from types import SimpleNamespace
    >>> console = Console(file=io.StringIO(), width=100)
    >>> ran = []
    >>> with LaneView(console, t0=0.0, statements=lambda: ran) as view:
    ...     view.model("x = 1\\n", now=1.0)
    ...     view.fed("x = 1\\n", now=1.0)
    ...     view.model("print(x)\\n", now=2.0)          # waits: statement 1 has not reported
    ...     ran.append(SimpleNamespace(source="x = 1\\n", status="ok", output="",
    ...                                started=1.5, ended=1.6))
    ...     view.poll(now=2.1)
    >>> [line.split("│")[0].strip() for line in console.file.getvalue().splitlines()]
    ['1.00 s  model', '1.50 s  tool', '2.00 s  model']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from rich.console import Group
from rich.live import Live
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["LaneView", "Ran"]

_OUTPUT_LINES = 3
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Ran(Protocol):
    """What the view needs of a statement that ran (``tools.python.StatementResult``)."""

    @property
    def source(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def output(self) -> str: ...
    @property
    def started(self) -> float: ...
    @property
    def ended(self) -> float: ...


@dataclass(order=True)
class _Row:
    t: float
    seq: int
    lines: list[Text] = field(compare=False)


def _stamp(t: float | None, lane: str, style: str) -> Text:
    when = f"{t:6.2f} s" if t is not None else " " * 8
    return Text.assemble((when, "dim"), "  ", (f"{lane:<5} │ ", style))


def _short(source: str, chars: int) -> str:
    lines = source.strip().splitlines() or [""]
    first = lines[0]
    if len(first) > chars or len(lines) > 1:
        first = first[:chars - 1] + "…"
    return f"{first:<{chars}}"


class LaneView:
    """Rows of the model lane and the tool lane, written in time order on ``console``.

    ``t0`` (a ``time.perf_counter()`` value) is time zero; ``statements()`` returns the
    statements that ran so far, in order (``PythonExecution.statements``). ``live``: keep a
    live tail at the bottom of the screen (default: when ``console`` is a terminal).
    """

    def __init__(self, console: Console, t0: float, statements: Callable[[], Sequence[Ran]],
                 *, live: bool | None = None, redirect: bool = False) -> None:
        self.console, self.t0, self._statements = console, t0, statements
        self._chars = max(16, min(44, console.width - 62))   # of a statement's source
        self._rows: list[_Row] = []            # waiting, not printed yet
        self._seq = 0
        self._line = ""                        # the model line being decoded
        self._fed: list[tuple[str, float]] = []  # statements queued: (source, time)
        self._shown = 0                        # statements reported
        self._last_end: float | None = None
        self._stopped = False                  # a statement failed: the rest never run
        self._decode_end: float | None = None
        self._final = False
        self._tail: Group = Group()
        self._live = (Live(console=console, get_renderable=lambda: self._tail, transient=True,
                           refresh_per_second=10, redirect_stdout=redirect,
                           redirect_stderr=redirect, vertical_overflow="crop")
                      if (console.is_terminal if live is None else live) else None)

    def __enter__(self) -> Self:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- what happened ----------------------------------------------------------------------
    def model(self, piece: str, now: float | None = None) -> None:
        """Text the model decoded; each completed line becomes a row stamped ``now``. Then
        :meth:`poll`."""
        now = self._now(now)
        self._line += piece
        while "\n" in self._line:
            head, self._line = self._line.split("\n", 1)
            self._add(now, [_stamp(now, "model", "bold blue") + Text(head)])
        self.poll(now + self.t0)

    def model_done(self, now: float | None = None) -> None:
        """The model stopped: its last line (if it had no newline) becomes a row."""
        if self._line:
            now = self._now(now)
            self._add(now, [_stamp(now, "model", "bold blue") + Text(self._line)])
            self._line = ""

    def fed(self, source: str, now: float | None = None) -> None:
        """A complete statement was queued to run (its row cannot be stamped earlier)."""
        self._fed.append((source, self._now(now)))

    def decode_ended(self, at: float) -> None:
        """Decoding ended at ``at`` (``time.perf_counter()``): a row marks it, once."""
        if self._decode_end is None:
            self._decode_end = at - self.t0
            self._add(self._decode_end, [_stamp(self._decode_end, "", "dim")
                                         + Text("decoding ended", style="dim")])

    def note(self, at: float, text: Text | str) -> None:
        """A row of our own at ``at`` (``time.perf_counter()``); a string is rich markup."""
        body = Text.from_markup(text) if isinstance(text, str) else text
        self._add(at - self.t0, [_stamp(at - self.t0, "", "") + body])

    def poll(self, now: float | None = None) -> None:
        """Pick up statements that reported since the last call, then :meth:`refresh`."""
        ran = self._statements()
        while self._shown < len(ran):
            self._statement_row(self._shown + 1, ran[self._shown])
            self._shown += 1
        self.refresh(now)

    def refresh(self, now: float | None = None) -> None:
        """Print the rows nothing earlier can precede any more; redraw the live tail."""
        rel = self._now(now)
        frontier = rel if self._final else self._frontier(rel)
        self._rows.sort()
        while self._rows and (self._final or self._rows[0].t <= frontier):
            for line in self._rows.pop(0).lines:
                self.console.print(line, soft_wrap=True)
        if self._live is not None:
            self._tail = self._render_tail(rel)

    def close(self) -> None:
        """Everything is known: print every waiting row, in order, and stop the live tail."""
        self.model_done()
        self.poll()
        self._final = True
        self.refresh()
        if self._live is not None:
            self._tail = Group()
            self._live.stop()
            self._live = None

    # -- internals ---------------------------------------------------------------------------
    def _now(self, now: float | None) -> float:
        return (time.perf_counter() if now is None else now) - self.t0

    def _add(self, t: float, lines: list[Text]) -> None:
        self._seq += 1
        self._rows.append(_Row(t, self._seq, lines))

    def _statement_row(self, k: int, st: Ran) -> None:
        start, dur = st.started - self.t0, st.ended - st.started
        ok = st.status == "ok"
        mark = Text("✓ ", style="green") if ok else Text("✗ ", style="bold red")
        row = (_stamp(start, "tool", "bold cyan") + mark
               + Text(f"{k:>2} ", style="cyan") + Text(_short(st.source, self._chars))
               + Text(f" {dur:5.2f} s", style="dim"))
        if not ok:
            row += Text(f"  {st.status}", style="bold red")
        out = st.output.rstrip().splitlines()
        if not ok:
            out = out[-1:]                     # the exception, not the traceback above it
        if out:
            row += Text("  → ", style="dim") + Text(out[0], style="yellow")
        lines = [row]
        pad = " " * (self._chars + 11)
        for extra in out[1:_OUTPUT_LINES]:
            lines.append(_stamp(None, "tool", "bold cyan") + Text(pad + "  → ", style="dim")
                         + Text(extra, style="yellow"))
        if len(out) > _OUTPUT_LINES:
            lines.append(_stamp(None, "tool", "bold cyan")
                         + Text(f"{pad}  … {len(out) - _OUTPUT_LINES} more lines", style="dim"))
        self._add(start, lines)
        self._last_end = st.ended - self.t0
        if not ok:
            self._stopped = True

    def _pending(self) -> tuple[str, float] | None:
        """The statement that runs now or next (its source, earliest start), if any."""
        if self._stopped or self._shown >= len(self._fed):
            return None
        source, queued = self._fed[self._shown]
        return source, max(queued, self._last_end if self._last_end is not None else queued)

    def _frontier(self, now: float) -> float:
        pending = self._pending()
        return now if pending is None else min(now, pending[1])

    def _render_tail(self, now: float) -> Group:
        rows = [(row.t, row.seq, [line.copy() for line in row.lines]) for row in self._rows]
        pending = self._pending()
        if pending is not None and pending[1] <= now:
            spin = _SPINNER[int(now * 10) % len(_SPINNER)]
            rows.append((pending[1], -1, [
                _stamp(pending[1], "tool", "bold cyan") + Text(f"{spin} ", style="cyan")
                + Text(f"{self._shown + 1:>2} ", style="cyan")
                + Text(_short(pending[0], self._chars))
                + Text(f" running {now - pending[1]:.1f} s", style="dim")]))
        lines = [line for _t, _seq, row in sorted(rows, key=lambda r: (r[0], r[1]))
                 for line in row]
        if self._line:
            lines.append(_stamp(None, "model", "bold blue") + Text(self._line) + Text("▌"))
        height = max(1, self.console.height - 1)
        for line in lines:
            line.no_wrap, line.overflow = True, "ellipsis"
        return Group(*lines[-height:])
