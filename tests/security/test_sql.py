"""SQL tool under hostile statements: the time limit holds, results and memory stay bounded,
and the read-only protections (writes, ATTACH, VACUUM INTO, load_extension) still hold."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import tracemalloc
from pathlib import Path

import pytest

from conveyor_integrations.events import FieldDone, TextChunk
from conveyor_integrations.parsing.statements import split_text
from conveyor_integrations.tools.sql import (
    SQLExecution,
    SQLLimits,
    connect,
    run_sql_script,
    run_statement,
)
from conveyor_integrations.tools.sql_guard import Watchdog

ROWS_60 = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT {n}) "
FOREVER = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r;"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlsec") / "shop.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                       "INSERT INTO items(name) VALUES ('apple'), ('pear');")
    conn.close()
    return path


async def partial(db: Path, script: str, limits: SQLLimits) -> str:
    ex = SQLExecution(db, limits=limits)
    for line in split_text("line", script):
        await ex.feed(TextChunk(0, ("query",), line))
    await ex.feed(FieldDone(0, ("query",), script))
    return await ex.finish({"query": script})


def test_expensive_opcodes_cannot_make_huge_values(db: Path) -> None:
    # before: each row ran one 50 MB randomblob + a 100 MB hex: 23 s past a 10 s limit, 500 MB
    script = ROWS_60.format(n=60) + "SELECT hex(randomblob(50000000)) FROM r;"
    t0 = time.monotonic()
    out = run_sql_script(db, script, limits=SQLLimits(max_seconds=5))
    assert out == "error: DataError: string or blob too big"
    assert time.monotonic() - t0 < 60


def test_watchdog_interrupts_when_the_progress_handler_is_not_called(db: Path) -> None:
    # the progress handler is made too rare to ever run: only the watchdog can stop it
    lim = SQLLimits(max_seconds=0.5, progress_every=2 ** 31 - 1)
    out = run_sql_script(db, FOREVER, limits=lim)
    assert out == "error: OperationalError: interrupted after 0.5 s"
    conn = connect(db)
    try:
        with Watchdog(conn, 0.2) as dog, pytest.raises(sqlite3.OperationalError,
                                                        match="interrupted"):
            conn.execute(FOREVER).fetchall()
        assert dog.fired
        assert conn.execute("SELECT 1").fetchone() == (1,)   # the connection is still usable
    finally:
        conn.close()


def test_watchdog_never_interrupts_a_later_statement(db: Path) -> None:
    conn = connect(db)
    try:
        with Watchdog(conn, 0.05) as dog:
            pass
        time.sleep(0.2)
        assert not dog.fired
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (2,)
    finally:
        conn.close()


def test_partial_execution_is_interrupted_too(db: Path) -> None:
    lim = SQLLimits(max_seconds=0.5, progress_every=2 ** 31 - 1)
    out = asyncio.run(partial(db, "SELECT 1 AS one;\n" + FOREVER + "\nSELECT 2;\n", lim))
    assert out == "one\n1\nerror: OperationalError: interrupted after 0.5 s"


def test_big_cells_rows_and_results_are_capped_in_bytes(db: Path) -> None:
    lim = SQLLimits(max_cell_chars=100, max_result_chars=200_000)
    one = run_sql_script(db, "SELECT hex(randomblob(400000)) AS h;", limits=lim)
    assert one.startswith("h\n") and one.endswith("...[+799900 chars]") and len(one) < 200
    # 1000 rows of 0.9 MB BLOBs: 900 MB unbounded; now one row at a time, the text capped
    script = ROWS_60.format(n=1000) + "SELECT i, randomblob(900000) AS b FROM r;"
    tracemalloc.start()
    try:
        out = run_sql_script(db, script, limits=lim)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40_000_000, peak
    lines = out.split("\n")
    assert lines[0] == "i | b" and lines[-1] == "... (more rows)" and len(lines) == 202
    assert all(line.endswith("...[+899900 bytes]") for line in lines[1:-1])
    many = run_sql_script(db, ROWS_60.format(n=5000) + "SELECT printf('%.500c', 'x') FROM r;",
                          limits=SQLLimits(max_rows=10_000, max_result_chars=50_000))
    assert many.endswith("\n... (output truncated at 50000 characters)")
    assert 50_000 - 600 < len(many) < 50_100


def test_many_big_columns_lower_the_value_cap(db: Path) -> None:
    cols = ", ".join("randomblob(900000)" for _ in range(100))   # 90 MB in a single row
    out = run_sql_script(db, f"SELECT {cols};")
    assert out == "error: DataError: string or blob too big"
    assert run_sql_script(db, "SELECT length(randomblob(900000)) AS n;") == "n\n900000"


def test_script_output_is_capped_across_statements(db: Path) -> None:
    lim = SQLLimits(max_result_chars=2_000)
    script = "SELECT printf('%.300c', 'y') AS s;\n" * 20
    out = run_sql_script(db, script, limits=lim)
    assert len(out) < 2_200
    assert out.endswith("error: output limit of 2000 characters reached; later statements "
                        "not run")
    assert asyncio.run(partial(db, script, lim)) == out


def test_value_limit_is_configurable(db: Path) -> None:
    lim = SQLLimits(max_value_bytes=1000)
    assert run_sql_script(db, "SELECT length(randomblob(1000)) AS n;", limits=lim) == "n\n1000"
    assert run_sql_script(db, "SELECT randomblob(1001);", limits=lim).endswith("too big")
    with pytest.raises(ValueError):
        SQLLimits(max_rows=0)


@pytest.mark.parametrize("script", [
    "INSERT INTO items(name) VALUES ('x');",
    "PRAGMA query_only = OFF;",
    "ATTACH '{db}.other' AS o;",
    "VACUUM INTO '{db}.copy';",
    "SELECT load_extension('/nonexistent/evil');",
])
def test_read_only_protections_hold(db: Path, script: str) -> None:
    script = script.format(db=db)
    out = run_sql_script(db, script)
    assert out.startswith("error: "), out
    assert asyncio.run(partial(db, script, SQLLimits())) == out
    assert not Path(f"{db}.other").exists() and not Path(f"{db}.copy").exists()
    assert run_sql_script(db, "SELECT count(*) AS n FROM items;") == "n\n2"


def test_run_statement_max_seconds_overrides(db: Path) -> None:
    conn = connect(db)
    try:
        out, ok = run_statement(conn, FOREVER, max_seconds=0.3)
    finally:
        conn.close()
    assert (out, ok) == ("error: OperationalError: interrupted after 0.3 s", False)
