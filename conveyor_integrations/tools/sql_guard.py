"""Resource caps of the SQL tool: a time limit that holds, and bounded results.

The SQL comes from the model, so it is untrusted. :class:`SQLLimits` bounds one statement:

* **time**: SQLite's progress handler checks the deadline every ``progress_every`` VM
  instructions, and a watchdog thread calls :meth:`sqlite3.Connection.interrupt` at the
  deadline, which also stops a statement made of a few expensive opcodes (the progress handler
  alone is only called *between* opcodes). Either way the statement ends with SQLite's
  ``interrupted`` error, reported as ``error: OperationalError: interrupted after N s``.
* **memory inside the engine**: ``SQLITE_LIMIT_LENGTH`` caps every string and BLOB the engine
  makes or reads (``randomblob(50000000)``, ``printf('%.*c', ...)``, ``group_concat``, a huge
  stored value): over it the statement fails with ``string or blob too big``. Since all of a
  result row's values are alive at once, the cap is lowered per statement so that
  ``columns x cap <= max_row_bytes`` (the column count is read from ``EXPLAIN``, which compiles
  the statement without running it).
* **the result**: each cell is cut at ``max_cell_chars`` (``...[+N chars]``), at most
  ``max_rows`` rows are shown (``... (more rows)``), and the text of a statement, and of a
  whole script, stops at ``max_result_chars`` (``... (output truncated at N characters)``).
  Rows are fetched one by one and each cell is cut as it arrives, so host memory stays bounded
  by one row plus the capped text.

Not bounded here: disk used by SQLite's temporary files within the time limit.

    >>> SQLLimits().max_rows, render_cell("x" * 12, SQLLimits(max_cell_chars=5))
    (200, 'xxxxx...[+7 chars]')
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Self

__all__ = ["SQLLimits", "Watchdog", "apply_limits", "render_cell", "result_columns",
           "value_cap"]


@dataclass(frozen=True)
class SQLLimits:
    """Caps on one SQL statement's time, engine memory and result size (see the module doc)."""

    max_seconds: float = 10.0
    """Wall-clock seconds a statement may run (executing and fetching) before it is stopped."""
    max_rows: int = 200
    """Rows shown per statement; further rows are counted as ``... (more rows)``."""
    max_cell_chars: int = 2_000
    """Characters shown per cell; the rest is replaced by ``...[+N chars]``."""
    max_result_chars: int = 200_000
    """Characters of output per statement and per script; beyond, the output is cut."""
    max_value_bytes: int = 1_000_000
    """``SQLITE_LIMIT_LENGTH``: the largest string or BLOB the engine may make or read."""
    max_row_bytes: int = 16_000_000
    """Bound on the bytes of one result row (per-statement value cap x columns)."""
    progress_every: int = 1_000
    """VM instructions between two deadline checks of the progress handler."""

    def __post_init__(self) -> None:
        if min(self.max_seconds, self.max_rows, self.max_cell_chars, self.max_result_chars,
               self.max_value_bytes, self.max_row_bytes, self.progress_every) <= 0:
            raise ValueError("every SQLLimits field must be positive")


def apply_limits(conn: sqlite3.Connection, limits: SQLLimits) -> None:
    """Set the engine-side caps of ``limits`` on ``conn`` (``SQLITE_LIMIT_LENGTH``)."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)


def result_columns(conn: sqlite3.Connection, statement: str) -> int:
    """How many columns ``statement`` returns, from its ``EXPLAIN`` (0 if it cannot tell)."""
    try:
        rows = conn.execute("EXPLAIN " + statement).fetchall()
    except (sqlite3.Error, ValueError):
        return 0                                   # the real run reports the error
    return max((int(r[3]) for r in rows if r[1] == "ResultRow"), default=0)


def value_cap(limits: SQLLimits, columns: int) -> int:
    """The per-statement ``SQLITE_LIMIT_LENGTH`` for a result of ``columns`` columns."""
    return max(1, min(limits.max_value_bytes, limits.max_row_bytes // max(columns, 1)))


def render_cell(v: Any, limits: SQLLimits) -> str:
    """One cell as text, cut at ``max_cell_chars`` with a ``...[+N chars]`` marker."""
    if v is None:
        return "NULL"
    n = limits.max_cell_chars
    if isinstance(v, bytes):
        text = str(v[:n]) if len(v) > n else str(v)
        extra = len(v) - n
        return f"{text}...[+{extra} bytes]" if extra > 0 else text
    text = str(v)
    if len(text) > n:
        return f"{text[:n]}...[+{len(text) - n} chars]"
    return text


class Watchdog:
    """Calls ``conn.interrupt()`` if the statement is still running at the deadline.

    Use as a context manager around executing and fetching one statement; leaving it disarms
    the timer, so a late tick never interrupts a later statement. ``fired`` tells whether it
    interrupted.
    """

    def __init__(self, conn: sqlite3.Connection, seconds: float) -> None:
        self.fired = False
        self._conn = conn
        self._lock = threading.Lock()
        self._armed = True
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.name = "sql-watchdog"
        self._timer.daemon = True

    def _fire(self) -> None:
        with self._lock:
            if self._armed:
                self.fired = True
                self._conn.interrupt()

    def __enter__(self) -> Self:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._armed = False
        self._timer.cancel()
