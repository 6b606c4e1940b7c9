"""CodeGen, Search and Planning through Ray give what they give in-process, started early.

The recorded messages of the benchmark's workloads stream through ``ChatConveyor`` (a Replay
backend at 150 tokens/s) with the same tools: in-process, then with a :class:`RayExecutor`
joined to the test's local cluster and warmed first (``RayExecutor.warm``: a cold worker
spends a second or two importing the tool's modules; BENCHMARKS.md has that figure). The tool
results must be equal, the bodies must have run in Ray's processes (never this one) once per
call or item, and the first of them must have started before the message's last token arrived.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")
pytest.importorskip("langchain_core")

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage

from conveyor_integrations import Scheduler
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import Replay
from conveyor_integrations.bench import transcripts as tx
from conveyor_integrations.bench.search_server import SearchServer
from conveyor_integrations.executors import RayExecutor

from .ray_tools import codegen_tool, planning_tool, read_log, search_tool

RATE = 150.0


@pytest.fixture(scope="module")
def search_url() -> Iterator[str]:
    with SearchServer(latency_s=0.2) as server:
        yield server.url


def turn(tools: list[Any], text: str, sched: Scheduler) -> tuple[AIMessage, list[str], float]:
    """Stream one message, then invoke its calls as ToolNode would; also when it ended."""
    model = ChatConveyor(backend=Replay([text], tokens_per_s=RATE), scheduler=sched)
    total: AIMessageChunk | None = None
    for chunk in model.bind_tools(tools).stream([HumanMessage("go")]):
        total = chunk if total is None else total + chunk
    decode_end = time.monotonic()           # the last chunk: decoding had ended by now
    assert total is not None
    by_name = {t.name: t for t in tools}
    outputs = [str(by_name[c["name"]].invoke(c).content) for c in total.tool_calls]
    return AIMessage(content=total.content, tool_calls=total.tool_calls,
                     response_metadata=total.response_metadata), outputs, decode_end


def early_flags(msg: AIMessage) -> list[bool]:
    return [c["early"] for c in msg.response_metadata["conveyor"]["calls"]]


def test_codegen_program_gives_the_same_output_through_a_ray_actor(
        sched: Scheduler, ray_executor: RayExecutor) -> None:
    text = tx.CODEGEN["portfolio_risk"]
    _, here, _ = turn([codegen_tool()], text, sched)
    msg, there, _ = turn([codegen_tool(ray_executor)], text, sched)
    assert there == here
    assert "Traceback" not in there[0] and there[0].strip()
    assert early_flags(msg) == [True]
    assert sched.pending() == 0


def test_codegen_statements_run_in_the_actor_while_the_program_is_decoded(
        sched: Scheduler, ray_executor: RayExecutor) -> None:
    code = ("import os, time\nprint(time.monotonic(), flush=True)\n"
            + "".join(f"x{i} = {i} * {i}  # a statement decoded after the first ran\n"
                      for i in range(30)) + "print(x29)\n")
    text = tx.hermes("Running it.", ("run_python", {"code": code}))
    msg, (out,), decode_end = turn([codegen_tool(ray_executor)], text, sched)
    first, last = out.split()
    assert last == str(29 * 29)
    assert float(first) < decode_end          # the first statement ran before the last token
    assert early_flags(msg) == [True]


@pytest.mark.parametrize("name", ["city_density", "travel_prices"])
def test_search_queries_run_as_ray_tasks_as_each_query_closes(
        name: str, sched: Scheduler, ray_executor: RayExecutor, search_url: str,
        tmp_path: Path) -> None:
    text = tx.SEARCH[name]
    here_log, there_log = tmp_path / "here.log", tmp_path / "there.log"
    _, here, _ = turn([search_tool(search_url, here_log), _outline()], text, sched)
    searcher = search_tool(search_url, there_log, ray_executor)
    ray_executor.warm(searcher)                    # its modules imported in every worker
    msg, there, decode_end = turn([searcher, _outline()], text, sched)
    assert there == here
    queries = [label for label, _, _ in read_log(here_log)]
    rows = read_log(there_log)
    assert sorted(label for label, _, _ in rows) == sorted(queries)    # each query once
    assert all(pid != os.getpid() for _, pid, _ in rows)               # all in Ray's workers
    # the first query ran before the last token; a later one may close near the end, and on
    # a loaded 2-core machine its task can start just after it (a race, not a fault)
    assert min(t for _, _, t in rows) < decode_end
    assert early_flags(msg)[0] is True


@pytest.mark.parametrize("name", ["density", "budget"])
def test_plan_steps_run_in_a_ray_actor_as_each_line_ends(
        name: str, sched: Scheduler, ray_executor: RayExecutor, search_url: str,
        tmp_path: Path) -> None:
    text = tx.PLANNING[name]
    here_log, there_log = tmp_path / "here.log", tmp_path / "there.log"
    _, here, _ = turn([planning_tool(search_url, here_log)], text, sched)
    warm = ray_executor.options(warm_actors=1)       # a started actor waits for the call
    planner = planning_tool(search_url, there_log, warm)
    warm.warm(planner)
    try:
        msg, there, decode_end = turn([planner], text, sched)
    finally:
        warm.close()
    assert there == here
    rows = read_log(there_log)
    assert sorted(r[0] for r in rows) == sorted(r[0] for r in read_log(here_log))
    assert len({pid for _, pid, _ in rows}) == 1 and rows[0][1] != os.getpid()  # one actor
    assert min(t for _, _, t in rows) < decode_end
    assert early_flags(msg) == [True]


def _outline() -> Any:
    from langchain_core.tools import tool

    @tool
    def write_outline(title: str, sections: list[str]) -> str:
        """Save the outline of a report."""
        return title + "\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(sections, 1))

    return write_outline
