"""SQL tool: statements run as they are decoded, with exactly the complete script's result."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor_integrations.backends import ChatRequest, Replay
from conveyor_integrations.events import CallDone, CallStarted, FieldDone, TextChunk
from conveyor_integrations.parsing import get_parser
from conveyor_integrations.parsing.statements import split_text
from conveyor_integrations.policy import BoundTools
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.tools.sql import (
    SQLExecution,
    SQLStatementSplitter,
    run_sql_script,
    sql_tool,
)
from conveyor_integrations.turn import run_turn

SCHEMA = """
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL, stock INTEGER);
INSERT INTO items(name, price, stock) VALUES
  ('apple', 0.5, 100), ('pear', 0.75, 0), ('fig; dried', 3.25, 12), ('kiwi', 0.3, NULL),
  ('plum', 1.1, 40), ('date', 2.0, 7);
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sql") / "shop.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.close()
    return path


async def run_partial(db: Path, script: str) -> tuple[str, SQLExecution]:
    """Feed ``script`` line by line, as the parser streams it, then finish."""
    ex = SQLExecution(db)
    await ex.start(CallStarted(0, "c1", "run_sql"))
    for line in split_text("line", script):
        await ex.feed(TextChunk(0, ("query",), line))
    await ex.feed(FieldDone(0, ("query",), script))
    return await ex.finish({"query": script}), ex


STATEMENTS = [
    "SELECT name, price FROM items WHERE price > {n} ORDER BY price;\n",
    "SELECT count(*) AS n FROM items\n  WHERE stock IS NOT NULL\n    AND stock > {k};\n",
    "SELECT name FROM items WHERE name LIKE '%;%';\n",
    "SELECT id, stock FROM items ORDER BY stock DESC, id LIMIT {k};\n",
    ("SELECT upper(name) AS u, -- a comment; with a semicolon\n  round(price * {n}, 2) AS p\n"
     "FROM items ORDER BY u;\n"),
    "SELECT 'a;b' AS s, {n} + {k} AS total; SELECT {k} AS k;\n",
    "SELECT nope FROM items;\n",
    "SELEC 1;\n",
    "SELECT * FROM missing_table;\n",
    "/* block; comment */ SELECT max(price) AS top FROM items;\n",
    "\n",
    "SELECT {n} AS no_semicolon",
]
scripts = st.lists(st.tuples(st.sampled_from(STATEMENTS), st.integers(0, 3), st.integers(0, 3)),
                   min_size=1, max_size=6).map(
    lambda parts: "".join(t.format(n=n, k=k) for t, n, k in parts))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(scripts)
def test_partial_equals_complete_on_generated_scripts(db: Path, script: str) -> None:
    partial, ex = asyncio.run(run_partial(db, script))
    assert partial == run_sql_script(db, script)
    assert ex.ran or not script.strip()


def test_result_format_and_error_stops_the_script(db: Path) -> None:
    script = ("SELECT name, stock FROM items WHERE price < 1 ORDER BY name;\n"
              "SELECT nope FROM items;\nSELECT 1;\n")
    partial, ex = asyncio.run(run_partial(db, script))
    assert partial == ("name | stock\napple | 100\nkiwi | NULL\npear | 0\n"
                       "error: OperationalError: no such column: nope")
    assert len(ex.ran) == 2                          # the statement after the error never ran


def test_splitter_does_not_depend_on_chunking() -> None:
    text = "SELECT ';' AS a; -- x;\nCREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END;\nSELECT 2"
    whole = SQLStatementSplitter()
    expected = whole.feed(text), whole.close()
    for size in (1, 2, 5, 13):
        sp = SQLStatementSplitter()
        got = [s for i in range(0, len(text), size) for s in sp.feed(text[i:i + size])]
        assert (got, sp.close()) == expected
    assert expected[0][0] == "SELECT ';' AS a;"           # the ';' in the string is not an end
    assert expected[0][1].endswith("SELECT 1; END;")      # nor those in a comment or a trigger
    assert len(expected[0]) == 2 and expected[1] == "\nSELECT 2"


def test_read_only_refuses_writes(db: Path) -> None:
    for script in ("INSERT INTO items(name) VALUES ('x');", "DELETE FROM items;",
                   "PRAGMA query_only = OFF;", f"ATTACH '{db}.other' AS o;"):
        out = run_sql_script(db, script)
        assert out.startswith("error: "), out
        partial, _ = asyncio.run(run_partial(db, script))
        assert partial == out
    assert run_sql_script(db, "SELECT count(*) AS n FROM items;") == "n\n6"
    assert not Path(f"{db}.other").exists()


def test_statements_run_while_the_query_is_decoded(sched: Scheduler, db: Path) -> None:
    spec, execs = sql_tool(db, scheduler=sched).conveyor_spec, []

    def capture(run: Any) -> Any:                         # the real tool's execution, kept
        execs.append(spec.make_execution(run))
        return execs[-1]

    capturing = SimpleNamespace(conveyor_spec=dataclasses.replace(spec, make_execution=capture))
    bound = BoundTools([capturing])
    query = ("SELECT name FROM items WHERE stock > 10 ORDER BY name;\n"
             "SELECT count(*) AS n FROM items;\n"
             "SELECT name, price FROM items WHERE price BETWEEN 1 AND 3 ORDER BY price DESC;\n")
    text = ('<tool_call>{"name": "run_sql", "arguments": {"query": ' + json.dumps(query) +
            "}}</tool_call>")

    async def turn() -> tuple[float, Any]:
        session = sched.session(tools=bound)
        result = await run_turn(Replay(text, tokens_per_s=200, seed=2), ChatRequest([]),
                                parser=get_parser("hermes", streams=bound.streams()),
                                session=session)
        found, value = await sched.aclaim(result.calls[0].id)
        assert found and session.decode_end is not None
        return session.decode_end, value

    decode_end, value = asyncio.run(turn())
    assert value == run_sql_script(db, query)
    assert value.startswith("name\napple\nfig; dried\nplum\nn\n6\n")
    ran = execs[0].ran
    assert [s.strip() for s, _ in ran] == query.splitlines()
    assert ran[0][1] < ran[1][1] < decode_end              # began while the rest was decoded


def test_side_effects_tool_runs_only_on_the_complete_call(sched: Scheduler, tmp_path: Path) -> None:
    db = tmp_path / "rw.db"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE log(msg TEXT);")
    conn.close()
    write = sql_tool(db, name="sql_write", side_effects=True, scheduler=sched)
    assert BoundTools([write]).streams() == {}
    query = "INSERT INTO log VALUES ('a');\nINSERT INTO log VALUES ('b');\n"
    prefix = [CallStarted(0, "w1", "sql_write"),
              TextChunk(0, ("query",), "INSERT INTO log VALUES ('a');\n"),
              FieldDone(0, ("query",), query)]

    def count() -> int:
        conn = sqlite3.connect(db)
        try:
            return int(conn.execute("SELECT count(*) FROM log").fetchone()[0])
        finally:
            conn.close()

    s = sched.session(tools=[write])
    s.handle(prefix)
    s.handle([CallDone(0, "w1", "sql_write", {"query": query})])
    assert sched.pending() == 0 and count() == 0          # nothing ran on the prefix, nor early
    assert sched.claim("w1") == (False, None)             # the framework runs it itself
    assert write(query) == "ok (1 rows changed)\nok (1 rows changed)" and count() == 2

    s2 = sched.session(tools=[write], run_side_effects=True)             # nothing left to veto the call
    s2.handle([CallStarted(0, "w2", "sql_write"),
               TextChunk(0, ("query",), "INSERT INTO log VALUES ('c');\n")])
    assert sched.pending() == 0 and count() == 2          # still nothing on a prefix
    s2.handle([CallDone(0, "w2", "sql_write", {"query": "INSERT INTO log VALUES ('c');\n"})])
    assert sched.claim("w2") == (True, "ok (1 rows changed)") and count() == 3


def test_pieces_that_differ_from_the_final_query_rerun_it(db: Path) -> None:
    async def go() -> str:
        ex = SQLExecution(db)
        await ex.feed(TextChunk(0, ("query",), "SELECT 1 AS early;\n"))
        return await ex.finish({"query": "SELECT 2 AS final;"})

    assert asyncio.run(go()) == "final\n2"
