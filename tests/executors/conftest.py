"""One Ray cluster for the executor tests: ``ray start --head`` on 127.0.0.1, stopped after.

The tests join it as an agent service would (``RayExecutor(address=...)``). The repository root
and ``tests/`` go on the workers' ``PYTHONPATH`` (a ``runtime_env``), so tool bodies defined in
these test modules (imported by pytest as ``executors.*``) import there as they do here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from conveyor_integrations.executors import RayExecutor

ROOT = Path(__file__).resolve().parents[2]
CPUS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> list[str]:
    exe = Path(sys.executable).with_name("ray")
    return [str(exe)] if exe.exists() else [shutil.which("ray") or "ray"]


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """A local Ray head node with CPUS CPUs on 127.0.0.1; yields its address."""
    port = _free_port()
    # no token authentication on this test-only cluster: Ray reads RAY_AUTH_MODE when it is
    # imported, and the test process imported it before this fixture ran (a service joining a
    # token cluster sets RAY_AUTH_MODE=token before it starts, as README.md says)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    subprocess.run([*_ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1",
                    f"--port={port}", f"--num-cpus={CPUS}", "--include-dashboard=false",
                    "--object-store-memory=200000000",
                    "--disable-usage-stats"],
                   check=True, env=env, cwd=ROOT, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([*_ray_cli(), "stop", "--force"], check=False, env=env,
                       capture_output=True,
                       timeout=120)


@pytest.fixture(scope="session")
def ray_executor(ray_address: str) -> RayExecutor:
    """An executor joined to the test cluster (connected once, for the whole session)."""
    executor = RayExecutor(ray_address, init={
        "runtime_env": {"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}}})
    executor.connect()
    return executor
