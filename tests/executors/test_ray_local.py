"""``RayExecutor()`` with no address starts a Ray cluster of its own, and ``shutdown`` stops it.

Run in a child process, because a process joins one Ray cluster at a time (this one is joined
to the test cluster of ``conftest.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import asyncio, json, os
from conveyor_integrations import Scheduler, partial_tool
from conveyor_integrations.events import CallDone, CallStarted, FieldDone
from conveyor_integrations.executors import RayExecutor
from conveyor_integrations.store import ResultStore

executor = RayExecutor(init={"num_cpus": 1, "object_store_memory": 80 * 2**20})

@partial_tool(start_on=["q"], executor=executor)
def where(q: str) -> list:
    return [q, os.getpid()]

async def main():
    sched = Scheduler(store=ResultStore())
    s = sched.session(tools=[where])
    s.handle([CallStarted(0, "c1", "where"), FieldDone(0, ("q",), "x"),
              CallDone(0, "c1", "where", {"q": "x"})])
    s.finish()
    found, value = await sched.aclaim("c1", spec=where.conveyor_spec)
    sched.close()
    return found, value

found, value = asyncio.run(main())
import ray
cpus = ray.cluster_resources().get("CPU")
started = executor.cluster.started_here
executor.shutdown()
print(json.dumps({"found": found, "value": value, "me": os.getpid(), "cpus": cpus,
                  "started_here": started}))
'''


def raylets() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "raylet"}


def test_an_executor_without_an_address_starts_and_stops_its_own_cluster() -> None:
    before = raylets()
    out = subprocess.run([sys.executable, "-c", SCRIPT], check=False, cwd=ROOT,
                         capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["found"] is True and got["value"][0] == "x"
    assert got["value"][1] != got["me"]                 # it ran in the new cluster's worker
    assert got["cpus"] == 1.0 and got["started_here"] is True
    assert raylets() <= before                          # its raylet is gone with it
