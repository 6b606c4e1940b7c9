"""A tiny real MCP server for the tests, served over stdio: ``python tests/adapters/mcp_server.py``.

One tool, ``lookup(city)``: it sleeps 0.3 s (``asyncio.sleep``) and answers
``"weather in {city}: sunny"``. Each run appends one line ``<time.time()> <city>`` to the file
named by ``$MCP_LOOKUP_LOG`` (when set), so a test can see when and how many times it ran.

Works with the FastMCP API of mcp 1.x and its mcp 2.x successor, ``MCPServer`` (same decorator
and ``run()``; the client side, langchain-mcp-adapters, is what needs mcp 1.x).
"""

from __future__ import annotations

import asyncio
import os
import time

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer as _Server
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as _Server

LOG_ENV = "MCP_LOOKUP_LOG"
ANSWER = "weather in {city}: sunny"

server = _Server("conveyor-test-weather")


def _record(city: str) -> None:
    """Append ``<time> <city>`` to the log file (a one-line write: no need to leave the loop)."""
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{time.time():.6f} {city}\n")


@server.tool()
async def lookup(city: str) -> str:
    """Look up the current weather in a city."""
    _record(city)
    await asyncio.sleep(0.3)
    return ANSWER.format(city=city)


if __name__ == "__main__":
    server.run()   # stdio: returns when the client closes stdin
