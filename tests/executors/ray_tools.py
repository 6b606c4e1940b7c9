"""The CodeGen, Search and Planning tools of the executor tests, as an agent would define them.

Each factory makes the same LangChain tool with or without an executor. Bodies log one line per
run (``label pid monotonic-time``) to a file, so a test sees where each ran, when it started
and that it ran once; ``time.monotonic`` is one clock for every process of the machine.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
from langchain_core.tools import BaseTool, tool

from conveyor_integrations import partial_tool
from conveyor_integrations.spec import ToolExecutor
from conveyor_integrations.tools.calculator import evaluate
from conveyor_integrations.tools.plan import PlanExecution, run_plan_text
from conveyor_integrations.tools.python import Limits, partial_python, run_python_code

LIMITS = Limits(wall_s=120.0, cpu_s=120, memory_mb=4096)


def log_run(log: Path, label: str) -> None:
    """Append ``label pid time`` (one write, so lines from many processes do not mix)."""
    with open(log, "a") as f:
        f.write(f"{label}\t{os.getpid()}\t{time.monotonic()!r}\n")


def read_log(log: Path) -> list[tuple[str, int, float]]:
    if not log.exists():
        return []
    rows = [line.split("\t") for line in log.read_text().splitlines()]
    return [(label, int(pid), float(t)) for label, pid, t in rows]


def codegen_tool(executor: ToolExecutor | None = None) -> BaseTool:
    @tool
    def run_python(code: str) -> str:
        """Run Python code; return what it printed."""
        return run_python_code(code, limits=LIMITS)

    return partial_python(run_python, limits=LIMITS, executor=executor)  # type: ignore[no-any-return]


def search_tool(url: str, log: Path, executor: ToolExecutor | None = None) -> BaseTool:
    @tool
    def web_search(queries: list[str]) -> str:
        """Search the web for each query."""
        parts = []
        for q in queries:
            log_run(log, f"search {q}")
            parts.append(f"## {q}\n" + httpx.get(url, params={"q": q}, timeout=30).text)
        return "\n".join(parts)

    return partial_tool(web_search, items="queries", combine="\n".join,  # type: ignore[no-any-return]
                        executor=executor)


def planning_tool(url: str, log: Path, executor: ToolExecutor | None = None) -> BaseTool:
    def lookup(query: str) -> float:
        """A number about ``query``, from the first search result."""
        log_run(log, f"lookup {query}")
        text = httpx.get(url, params={"q": query}, timeout=30).text
        return float(sum(map(ord, text)) % 9000 + 1000)

    def calculate(expression: str) -> float:
        """The value of an arithmetic expression."""
        log_run(log, f"calculate {expression}")
        return float(evaluate(expression))

    steps: dict[str, Any] = {"lookup": lookup, "calculate": calculate}

    @tool
    def run_plan(plan: str) -> str:
        """Run a numbered plan of tool calls."""
        return run_plan_text(steps, plan)

    return partial_tool(run_plan, stream="plan", unit="line",  # type: ignore[no-any-return]
                        execution=lambda: PlanExecution(steps), executor=executor)
