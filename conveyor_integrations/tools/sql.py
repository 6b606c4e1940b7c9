"""The SQL tool: run each complete SQLite statement as soon as it has been decoded.

``sql_tool(db_path)`` makes ``run_sql(query: str) -> str``. The parser streams the ``query``
argument line by line (``stream="query", unit="line"``); :class:`SQLExecution` accumulates the
lines and cuts out each statement the moment :func:`sqlite3.complete_statement` says it is
complete (a ``;`` outside strings, comments and triggers), then runs it on a worker thread, in
order, on a connection opened when the call began. The result is every statement's output
(column names and rows, or ``ok``), stopping at the first error, exactly what
:func:`run_sql_script` gives on the complete script: both use the same :class:`SQLStatementSplitter`
and the same per-statement rendering, and the splitter cuts a text at the same places however it
is chunked.

Read-only by default: the database is opened with ``file:...?mode=ro`` (``uri=True``), with
``PRAGMA query_only`` on and ``ATTACH`` refused, so a prefix of a call can never change anything.
With ``side_effects=True`` the connection is read-write and the tool is
``partial_tool(side_effects=True)``: it runs only on the complete call (the core sees to that).

Model output is untrusted: every statement runs under :class:`SQLLimits` (see
:mod:`~conveyor_integrations.tools.sql_guard`): a deadline enforced by the progress handler
*and* a watchdog that interrupts the connection, SQLite's ``SQLITE_LIMIT_LENGTH`` on strings
and BLOBs, and caps on cells, rows and result characters (marked in the text, never silent).

Hand-written because nothing splits SQLite scripts incrementally: ``executescript`` runs a whole
script and returns no rows; ``sqlite3.complete_statement`` is the exact test SQLite's own shell
uses, so it is used here rather than a SQL parser. Example::

    run_sql = sql_tool("shop.db")
    print(run_sql("SELECT name FROM items ORDER BY price LIMIT 2;"))
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..events import CallStarted, FieldDone, ItemDone, TextChunk
from ..partial import partial_tool
from .sql_guard import SQLLimits, Watchdog, apply_limits, render_cell, result_columns, value_cap

if TYPE_CHECKING:
    from ..scheduler import Scheduler

__all__ = ["SQLExecution", "SQLLimits", "SQLStatementSplitter", "connect", "run_sql_script",
           "run_statement", "sql_tool"]

MAX_ROWS = SQLLimits.max_rows
"""Rows shown per statement by default; further rows are counted as ``... (more rows)``."""
_DEFAULT = SQLLimits()


class SQLStatementSplitter:
    """Cuts SQL text into complete statements as it arrives (chunking does not matter).

        >>> sp = SQLStatementSplitter()
        >>> sp.feed("SELECT 1; SELECT ';'"), sp.feed(";\\n"), sp.close()
        (['SELECT 1;'], [" SELECT ';';"], None)
    """

    def __init__(self) -> None:
        self._buf = ""
        self._scan = 0

    def feed(self, text: str) -> list[str]:
        """Add ``text``; return the statements it completed, in order."""
        self._buf += text
        out: list[str] = []
        while (pos := self._buf.find(";", self._scan)) >= 0:
            candidate = self._buf[: pos + 1]
            if sqlite3.complete_statement(candidate):
                out.append(candidate)
                self._buf, self._scan = self._buf[pos + 1:], 0
            else:
                self._scan = pos + 1
        return out

    def close(self) -> str | None:
        """The unterminated tail (run as a last statement), or None when it is blank."""
        tail, self._buf, self._scan = self._buf, "", 0
        return tail if tail.strip() else None


def split_statements(script: str) -> list[str]:
    """Every statement of ``script``, as :class:`SQLStatementSplitter` cuts it."""
    sp = SQLStatementSplitter()
    out = sp.feed(script)
    tail = sp.close()
    return out + ([tail] if tail is not None else [])


def _deny_attach(action: int, *args: Any) -> int:
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and args[0] == "query_only" and args[1] is not None:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def connect(db_path: str | Path, *, read_only: bool = True,
            limits: SQLLimits | None = None) -> sqlite3.Connection:
    """Open ``db_path``: read-only (``mode=ro``, ``query_only``, no ``ATTACH``) or read-write.

    ``SQLITE_LIMIT_LENGTH`` is set from ``limits`` (default :class:`SQLLimits`).
    """
    if not read_only:
        conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    else:
        uri = Path(db_path).resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_deny_attach)
    apply_limits(conn, limits or _DEFAULT)
    return conn


def run_statement(conn: sqlite3.Connection, statement: str, *,
                  max_seconds: float | None = None, limits: SQLLimits | None = None,
                  budget: int | None = None) -> tuple[str, bool]:
    """Run one statement; ``(its output, ok)``. Output: a header line and rows, or ``ok``.

    Runs under ``limits`` (``max_seconds``, if given, overrides its time limit); the output is
    at most ``budget`` characters (default ``limits.max_result_chars``) plus a marker.
    """
    lim = limits or _DEFAULT
    seconds = lim.max_seconds if max_seconds is None else max_seconds
    cap = lim.max_result_chars if budget is None else budget
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, value_cap(lim, result_columns(conn, statement)))
    deadline = time.monotonic() + seconds
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), lim.progress_every)
    try:
        with Watchdog(conn, seconds):
            cur = conn.execute(statement)
            if cur.description is None:
                return ("ok" if cur.rowcount < 0 else f"ok ({cur.rowcount} rows changed)"), True
            lines = [" | ".join(render_cell(d[0], lim) for d in cur.description)]
            used = len(lines[0])
            for n, row in enumerate(cur):
                if n == lim.max_rows:
                    lines.append("... (more rows)")
                    break
                lines.append(" | ".join(render_cell(v, lim) for v in row))
                used += len(lines[-1]) + 1
                if used > cap:
                    lines[-1] = f"... (output truncated at {cap} characters)"
                    break
            return "\n".join(lines), True
    except sqlite3.Error as exc:
        msg = str(exc)
        if msg == "interrupted":
            msg = f"interrupted after {seconds:g} s"
        return f"error: {type(exc).__name__}: {msg}", False
    finally:
        conn.set_progress_handler(None, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, lim.max_value_bytes)


_SCRIPT_CUT = "error: output limit of {} characters reached; later statements not run"


def _script_lines(outputs: list[str]) -> str:
    return "\n".join(outputs)


def run_sql_script(db_path: str | Path, script: str, *, read_only: bool = True,
                   limits: SQLLimits | None = None) -> str:
    """Run every statement of ``script`` in order, stopping at the first error.

    ``script`` may hold several statements; the result is each one's output, one after another::

        run_sql_script("shop.db", "SELECT 1 AS one; SELECT 2 AS two;")   # 'one\\n1\\ntwo\\n2'
    """
    lim = limits or _DEFAULT
    try:
        conn = connect(db_path, read_only=read_only, limits=lim)
    except sqlite3.Error as exc:
        return f"error: {type(exc).__name__}: {exc}"
    try:
        outputs: list[str] = []
        left = lim.max_result_chars
        for statement in split_statements(script):
            if left <= 0:
                outputs.append(_SCRIPT_CUT.format(lim.max_result_chars))
                break
            out, ok = run_statement(conn, statement, limits=lim, budget=left)
            outputs.append(out)
            left -= len(out) + 1
            if not ok:
                break
        return _script_lines(outputs)
    finally:
        conn.close()


class SQLExecution:
    """Runs each complete statement of the ``field`` argument read-only as it is decoded.

    Implements :class:`~conveyor_integrations.partial.PartialExecution`::

        @partial_tool(stream="query", unit="line", execution=lambda: SQLExecution("shop.db"))
        def run_sql(query: str) -> str:
            return run_sql_script("shop.db", query)

    ``ran`` lists ``(statement, perf_counter when it started)`` for what ran early, and ``spans``
    ``(statement, started, ended)`` for each statement that finished.
    """

    def __init__(self, db_path: str | Path, *, field: str = "query",
                 limits: SQLLimits | None = None) -> None:
        self.db_path, self.field = db_path, field
        self.limits = limits or _DEFAULT
        self._left = self.limits.max_result_chars
        self.ran: list[tuple[str, float]] = []
        self.spans: list[tuple[str, float, float]] = []
        self._splitter = SQLStatementSplitter()
        self._pieces: list[str] = []
        self._outputs: list[str] = []
        self._failed = False
        self._conn: sqlite3.Connection | None = None
        self._tail: asyncio.Task[None] | None = None

    async def start(self, call: CallStarted) -> None:
        return None

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        """Queue the statements this piece completed; never waits for them to run."""
        if isinstance(event, TextChunk) and event.path == (self.field,):
            self._pieces.append(event.text)
            for statement in self._splitter.feed(event.text):
                self._queue(statement)

    def _queue(self, statement: str) -> None:
        self._tail = asyncio.ensure_future(self._run_after(self._tail, statement))

    async def _run_after(self, prev: asyncio.Task[None] | None, statement: str) -> None:
        if prev is not None:
            await prev
        if self._failed:
            return
        if self._conn is None:
            try:
                self._conn = await asyncio.to_thread(connect, self.db_path, limits=self.limits)
            except sqlite3.Error as exc:
                self._outputs.append(f"error: {type(exc).__name__}: {exc}")
                self._failed = True
                return
        if self._left <= 0:
            self._outputs.append(_SCRIPT_CUT.format(self.limits.max_result_chars))
            self._failed = True
            return
        started = time.perf_counter()
        self.ran.append((statement, started))
        out, ok = await asyncio.to_thread(run_statement, self._conn, statement,
                                          limits=self.limits, budget=self._left)
        self.spans.append((statement, started, time.perf_counter()))
        self._outputs.append(out)
        self._left -= len(out) + 1
        self._failed = not ok

    async def finish(self, args: dict[str, Any]) -> str:
        """Run the tail, wait for every statement; rerun in full if the pieces differ."""
        script = args.get(self.field)
        if not isinstance(script, str):
            raise TypeError(f"{self.field!r} must be a string, not {type(script).__name__}")
        try:
            if "".join(self._pieces) != script:
                await self.cancel()
                return await asyncio.to_thread(run_sql_script, self.db_path, script,
                                               limits=self.limits)
            tail = self._splitter.close()
            if tail is not None:
                self._queue(tail)
            if self._tail is None:
                return ""
            await self._tail
            return _script_lines(self._outputs)
        finally:
            await self.cancel()

    async def cancel(self) -> None:
        """Interrupt the running statement and close the connection. Idempotent."""
        conn, tail = self._conn, self._tail
        if tail is not None and not tail.done():
            if conn is not None:
                conn.interrupt()
            tail.cancel()
            await asyncio.gather(tail, return_exceptions=True)
        if conn is not None:
            self._conn = None
            await asyncio.to_thread(conn.close)


def sql_tool(db_path: str | Path, *, name: str = "run_sql", side_effects: bool = False,
             scheduler: Scheduler | None = None,
             limits: SQLLimits | None = None) -> Callable[[str], str]:
    """A ready ``run_sql(query: str) -> str`` tool over the SQLite database ``db_path``.

    Read-only, each statement running as soon as it is decoded; ``side_effects=True``: read-write,
    run only on the complete call. ``limits`` (default :class:`SQLLimits`) caps each statement's
    time, engine memory and output::

        >>> import tempfile, os
        >>> db = os.path.join(tempfile.mkdtemp(), "t.db")
        >>> admin = sql_tool(db, name="sql_admin_demo", side_effects=True)
        >>> admin("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);")
        'ok\\nok (2 rows changed)'
        >>> sql_tool(db, name="sql_demo")("SELECT sum(x) AS s FROM t;")
        's\\n3'
    """
    read_only = not side_effects

    def run_sql(query: str) -> str:
        """Run SQLite statements (separated by ';') and return each one's rows as text."""
        return run_sql_script(db_path, query, read_only=read_only, limits=limits)

    run_sql.__name__ = run_sql.__qualname__ = name
    if side_effects:
        tool = partial_tool(run_sql, side_effects=True, scheduler=scheduler)
    else:
        tool = partial_tool(run_sql, stream="query", unit="line",
                            execution=lambda: SQLExecution(db_path, limits=limits),
                            scheduler=scheduler)
    return cast(Callable[[str], str], tool)
