"""Early tool work through Ray: dispatch per piece beside in-process, and a scale run of many
agent processes sharing one Ray cluster of sandboxes (see conveyor_integrations/bench/ray_scale.py
for what each row measures).

Run (needs the ``ray`` extra; it starts its own head node on this machine and stops it)::

    .venv/bin/python scripts/bench_ray.py [--cpus 4] [--scale 1x1,2x4,4x8] [--runs 3]

Rows: ``in-process`` (no executor) and ``ray`` for 1 process x 1 request (the per-piece
dispatch overhead, best p50 of ``--runs``), then each ``PxR`` of ``--scale``: P agent processes
each running R requests at once, every request three calls (an ``items=`` search, a streamed
``write``, the sandboxed Python tool). Tools ask for 0.25 CPU each, so the cluster holds
``4 x --cpus`` calls at once and queues the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conveyor_integrations.bench.ray_scale import measure


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("ray")
    cli = str(exe) if exe.exists() else (shutil.which("ray") or "ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([cli, *args], check=True, env=env, capture_output=True, text=True,
                          timeout=300)


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return min(rows, key=lambda r: r["dispatch_p50_ms"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpus", type=int, default=4, help="CPUs of the local head node")
    ap.add_argument("--scale", default="1x1,2x4,4x8", help="PROCESSESxREQUESTS, comma-separated")
    ap.add_argument("--pieces", type=int, default=4, help="pieces per call")
    ap.add_argument("--rate", type=float, default=50.0, help="tokens/s per stream")
    ap.add_argument("--runs", type=int, default=3, help="runs of the 1x1 rows (best p50)")
    ap.add_argument("--out", default="bench-results/ray.json")
    a = ap.parse_args()
    port = _free_port()
    root = Path(__file__).resolve().parents[1]
    os.environ["RAY_AUTH_MODE"] = "disabled"         # the test-only head node below
    _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         f"--num-cpus={a.cpus}", "--include-dashboard=false", "--disable-usage-stats",
         "--object-store-memory=300000000")
    address = f"127.0.0.1:{port}"
    rows: list[dict[str, Any]] = []
    try:
        for where in (None, address):
            runs = [measure(where, pieces=a.pieces, tokens_per_s=a.rate) for _ in range(a.runs)]
            rows.append({**_best(runs), "scale": "1x1"})
            print(json.dumps(rows[-1]), flush=True)
        for level in a.scale.split(","):
            p, r = (int(x) for x in level.split("x"))
            if (p, r) == (1, 1):
                continue
            t0 = time.perf_counter()
            row = measure(address, processes=p, requests=r, pieces=a.pieces,
                          tokens_per_s=a.rate)
            rows.append({**row, "scale": level, "bench_s": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        _ray("stop", "--force")
    out = root / a.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpus": a.cpus, "rate": a.rate, "pieces": a.pieces,
                               "rows": rows}, indent=1))
    print("| where | processes x requests | calls | pieces | dispatch p50 ms | p99 ms | lost "
          "| duplicated | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['where']} | {r['scale']} | {r['calls']} | {r['pieces']} | "
              f"{r['dispatch_p50_ms']:.1f} | {r['dispatch_p99_ms']:.1f} | {r['lost']} | "
              f"{r['duplicated']} | {r['wall_s']:.1f} |")


if __name__ == "__main__":
    main()
