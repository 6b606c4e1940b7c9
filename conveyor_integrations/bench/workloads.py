"""The six workloads: CodeGen, Search, Planning, Validation, SQL and the calculator.

Each uses the library's ready tools (:mod:`conveyor_integrations.tools`) against real work: a
sandboxed Python worker running numpy and matplotlib, HTTP requests to a local search server
(its latency stands for the network), SQLite queries on a generated shop database, pydantic
validation. ``WORKLOADS`` lists them by name. Example::

    >>> sorted(WORKLOADS)
    ['calculator', 'codegen', 'planning', 'search', 'sql', 'validation']
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..events import FieldDone, ItemDone, TextChunk
from ..tools.calculator import evaluate
from ..tools.plan import PlanExecution, arun_plan_text
from ..tools.python import Limits, PythonExecution, arun_python_code
from ..tools.search import HttpOptions, http_get_text
from ..tools.sql import SQLExecution, SQLStatementSplitter, run_sql_script
from ..tools.validate import ValidateExecution, validation_errors
from . import transcripts as tx
from .workload_base import Env, Mark, Piece, Pieces, ToolPart, Trace, Workload, marks_of

__all__ = ["WORKLOADS", "Customer"]

_HTTP = HttpOptions(timeout=30.0, retries=0, allow_hosts=("127.0.0.1",))  # the local server
LIMITS = Limits(wall_s=120.0, cpu_s=120, memory_mb=4096)


def _chain(i: int) -> tuple[int, ...]:
    return (i - 1,) if i else ()


def _first_line(src: str) -> str:
    return src.strip().splitlines()[0] if src.strip() else src


class CodeGen(Workload):
    def parts(self, env: Env, trace: Trace) -> list[ToolPart]:
        async def run_python(code: str) -> str:
            return await arun_python_code(code, limits=LIMITS)

        fn = trace.traced(lambda code: "run_python (whole program)", run_python)
        return [ToolPart("run_python", "Run Python code; return what it printed.", fn, {
            "stream": "code", "unit": "statement",
            "execution": trace.made(lambda: PythonExecution(limits=LIMITS))})]

    def pieces(self, trace: Trace, marks: list[Mark]) -> Pieces:
        ex: PythonExecution = trace.executions[-1]
        chunks = marks_of(marks, TextChunk, ("code",))
        pieces = [Piece(_first_line(st.source), t, st.started, st.ended, _chain(i))
                  for i, (st, (t, _)) in enumerate(zip(ex.statements, chunks))]
        stopped = bool(ex.statements) and ex.statements[-1].status != "ok"  # the rest never run
        ran_all = len(ex.statements) == len(chunks) or (stopped and len(pieces) < len(chunks))
        return pieces, None, ran_all and not trace.spans


class Search(Workload):
    def parts(self, env: Env, trace: Trace) -> list[ToolPart]:
        async def one(query: str) -> str:
            return f"## {query}\n" + await http_get_text(env.search_url, {"q": query}, _HTTP)

        traced_one = trace.traced(lambda query: query, one)

        async def web_search(queries: list[str]) -> str:
            return "\n".join(await asyncio.gather(*(traced_one(q) for q in queries)))

        async def write_outline(title: str, sections: list[str]) -> str:
            return title + "\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(sections, 1))

        return [ToolPart("web_search", "Search the web for each query.", web_search,
                         {"items": "queries", "combine": "\n".join}),
                ToolPart("write_outline", "Save the outline of a report.", write_outline,
                         decorated=False)]

    def pieces(self, trace: Trace, marks: list[Mark]) -> Pieces:
        spans = {label: (s, e) for label, s, e in trace.spans}
        items = marks_of(marks, ItemDone, ("queries",))
        pieces = [Piece(ev.value, t, *spans[ev.value]) for t, ev in items if ev.value in spans]
        return pieces, None, len(pieces) == len(items) == len(trace.spans)


class Planning(Workload):
    def parts(self, env: Env, trace: Trace) -> list[ToolPart]:
        async def lookup(query: str) -> float:
            """A number about ``query``, from the first search result."""
            text = await http_get_text(env.search_url, {"q": query}, _HTTP)
            ref = re.search(r"ref ([0-9a-f]{8})", text)
            return float(int(ref.group(1), 16) % 9000 + 1000) if ref else 0.0

        async def calculate(expression: str) -> float:
            """The value of an arithmetic expression."""
            return float(evaluate(expression))

        steps = {"lookup": trace.traced(lambda query: f"lookup {query}", lookup),
                 "calculate": trace.traced(lambda expression: f"= {expression}", calculate)}

        async def run_plan(plan: str) -> str:
            return await arun_plan_text(steps, plan)

        return [ToolPart("run_plan", "Run a numbered plan of tool calls.", run_plan, {
            "stream": "plan", "unit": "line",
            "execution": trace.made(lambda: PlanExecution(steps))})]

    def pieces(self, trace: Trace, marks: list[Mark]) -> Pieces:
        ex: PlanExecution = trace.executions[-1]
        final: dict[int, float] = {}
        for t, ev in marks_of(marks, TextChunk, ("plan",)):
            m = re.match(r"\s*(\d+)\s*\.", ev.text)
            if m:
                final[int(m.group(1))] = t
        records = [r for _, r in sorted(ex.runner.steps.items())
                   if r.started is not None and r.ended is not None and r.number in final]
        index = {r.number: i for i, r in enumerate(records)}
        pieces = [Piece(f"{r.number}. {r.name}", final[r.number], r.started or 0.0,
                        r.ended or 0.0, tuple(index[d] for d in r.deps if d in index))
                  for r in records]
        return pieces, None, len(pieces) == len(final) == len(trace.spans)


class Customer(BaseModel):
    """The record the Validation workload's tool accepts."""

    name: str = Field(min_length=1)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
    age: int = Field(ge=18, le=120)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166 alpha-2 code")
    phone: str = Field(pattern=r"^\+[0-9 ]{7,20}$")
    plan: Literal["starter", "team", "business", "enterprise"]
    seats: int = Field(ge=1, le=1000)
    start_date: date
    street: str
    city: str
    postal_code: str
    notes: str = ""


class _TimedValidate(ValidateExecution):
    """Validates as the library does, recording each check's time and whether it failed."""

    def __init__(self, trace: Trace, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trace, self.failed = trace, False

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        t0 = time.perf_counter()
        try:
            await super().feed(event)
        except Exception:
            self.failed = True
            raise
        finally:
            if isinstance(event, FieldDone) and len(event.path) == 1:
                self.trace.record(f"check {event.path[0]}", t0)


class Validation(Workload):
    def parts(self, env: Env, trace: Trace) -> list[ToolPart]:
        async def register(args: dict[str, Any]) -> str:
            return f"registered {args.get('name')}"

        async def register_customer(**fields: Any) -> str:
            errors = validation_errors(fields, model=Customer)
            if errors:
                return "invalid arguments: " + "; ".join(errors)
            return await register(fields)

        fn = trace.traced(lambda **_: "validate the whole record", register_customer)
        return [ToolPart("register_customer", "Register a new customer account.", fn, {
            "execution": trace.made(lambda: _TimedValidate(trace, run=register, model=Customer))},
            args_schema=Customer.model_json_schema())]

    def pieces(self, trace: Trace, marks: list[Mark]) -> Pieces:
        ex: _TimedValidate = trace.executions[-1]
        final = {ev.path[0]: t for t, ev in marks_of(marks, FieldDone) if len(ev.path) == 1}
        pieces = [Piece(label, final[label[6:]], s, e) for label, s, e in trace.spans
                  if label.startswith("check ") and label[6:] in final]
        complete = len(pieces) == len(ex.checked) == len(trace.spans)
        return pieces, (len(pieces) - 1 if ex.failed and pieces else None), complete


class SQL(Workload):
    def parts(self, env: Env, trace: Trace) -> list[ToolPart]:
        async def run_sql(query: str) -> str:
            return await asyncio.to_thread(run_sql_script, env.db_path, query)

        fn = trace.traced(lambda query: "run_sql (whole script)", run_sql)
        return [ToolPart("run_sql", "Run SQLite statements on the shop database.", fn, {
            "stream": "query", "unit": "line",
            "execution": trace.made(lambda: SQLExecution(env.db_path))})]

    def pieces(self, trace: Trace, marks: list[Mark]) -> Pieces:
        ex: SQLExecution = trace.executions[-1]
        splitter, final = SQLStatementSplitter(), list[float]()
        for t, ev in marks_of(marks, TextChunk, ("query",)):
            final.extend(t for _ in splitter.feed(ev.text))
        pieces = [Piece(_first_line(stmt), d, s, e, _chain(i))
                  for i, ((stmt, s, e), d) in enumerate(zip(ex.spans, final))]
        return pieces, None, len(ex.spans) == len(final) and not trace.spans


class Calculator(Workload):
    def parts(self, env: Env, trace: Trace) -> list[ToolPart]:
        async def calculate(expression: str) -> str:
            return repr(evaluate(expression))

        fn = trace.traced(lambda expression: expression, calculate)
        return [ToolPart("calculate", "Evaluate an arithmetic expression.", fn,
                         {"start_on": ["expression"]})]

    def pieces(self, trace: Trace, marks: list[Mark]) -> Pieces:
        spans = {label: (s, e) for label, s, e in trace.spans}
        pieces = [Piece(ev.value, t, *spans[ev.value]) for t, ev in
                  marks_of(marks, FieldDone, ("expression",)) if ev.value in spans]
        return pieces, None, len(pieces) == len(trace.spans) == 1


WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    CodeGen("codegen", "CodeGen", tx.CODEGEN,
            "numpy + matplotlib programs run statement by statement in the sandboxed worker"),
    Search("search", "Search", tx.SEARCH,
           "queries to a local HTTP server whose latency stands for the network (simulated)"),
    Planning("planning", "Planning", tx.PLANNING,
             "LLMCompiler-style plans: lookups (local HTTP server, simulated latency) and "
             "arithmetic, each step as soon as its line and its inputs are ready"),
    Validation("validation", "Validation", tx.VALIDATION,
               "a 12-field record whose 2nd, 3rd or 4th field is invalid: decoding stops there"),
    SQL("sql", "SQL", tx.SQL, "SQLite queries on a generated 400k-order shop database"),
    Calculator("calculator", "Calculator", tx.CALCULATOR,
               "one expression: microseconds of tool time, nothing to gain"),
)}
