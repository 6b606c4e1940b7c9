"""Run the fault-injection scenarios of ``tests/reliability`` with larger counts; print a table.

    python scripts/reliability_faults.py --runs 60            # per fault kind and path
    python scripts/reliability_faults.py --runs 20 --kinds fail garbage --paths core

Each fault kind runs through ``ChatConveyor.invoke``, ``ChatConveyor.ainvoke`` and the core
``run_turn``, each run with a fresh seed, on a fresh scheduler per kind and path; the loop
shutdown scenario runs ``--loops`` times. Prints a markdown table; exits 1 if any of the counts
that must be zero (lost results, duplicated executions, leaks, escaped exceptions) is not.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conveyor_integrations.scheduler import Scheduler, set_default_scheduler
from tests.reliability import BAD, KINDS, PATHS, TALLY, run_scenario
from tests.reliability.test_faults import test_loop_shut_down_with_work_in_flight

COLUMNS = ("faults", "requests", "executions_checked", "typed_errors", *BAD)


def _row(c: Counter[str]) -> dict[str, int]:
    row = {k: c[k] for k in COLUMNS}
    row["faults"] = sum(v for k, v in c.items() if k.startswith("fault:"))
    row["typed_errors"] = sum(v for k, v in c.items() if k.startswith("errors:"))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=40, help="runs per fault kind and path")
    ap.add_argument("--loops", type=int, default=10, help="event-loop shutdown runs per variant")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    ap.add_argument("--paths", nargs="*", default=list(PATHS), choices=PATHS)
    args = ap.parse_args()
    t0 = time.perf_counter()
    per_kind: dict[str, Counter[str]] = {}
    for kind in args.kinds:
        total: Counter[str] = Counter()
        for path in args.paths:
            sched = Scheduler(claim_timeout=5.0)
            previous = set_default_scheduler(sched)
            total.update(run_scenario(sched, kind, path, args.runs, args.seed))
            sched.close()
            set_default_scheduler(previous)
        per_kind[kind] = total
    before = Counter(TALLY)
    for i in range(args.loops):
        for how in ("asyncio.run", "loop.close"):
            try:
                test_loop_shut_down_with_work_in_flight(how)
            except AssertionError:
                pass   # counted in TALLY already
            except Exception:  # noqa: BLE001
                TALLY["escaped_exceptions"] += 1
    loops = Counter(TALLY)
    loops.subtract(before)
    per_kind["loop_shutdown"] = +loops
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("conveyor")]
    wall = time.perf_counter() - t0

    print(f"| scenario | {' | '.join(COLUMNS)} |")
    print("|" + "---|" * (len(COLUMNS) + 1))
    grand: Counter[str] = Counter()
    for name, c in per_kind.items():
        row = _row(c)
        grand.update(row)
        print(f"| {name} | {' | '.join(str(row[k]) for k in COLUMNS)} |")
    print(f"| **total** | {' | '.join(str(grand[k]) for k in COLUMNS)} |")
    print(f"\npaths: {', '.join(args.paths)}; {args.runs} runs per kind and path; "
          f"conveyor threads left after close: {len(leftover)}; wall time {wall:.1f} s")
    return 1 if any(grand[k] for k in BAD) or leftover else 0


if __name__ == "__main__":
    sys.exit(main())
