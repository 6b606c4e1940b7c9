"""Compare the library's cost per decoded token against an earlier commit, in one process.

Timings on a shared machine drift by tens of percent between runs, more than the changes they
are meant to show. This imports the package of ``REV`` (extracted with ``git archive`` under
another name; the core uses relative imports only) beside the working tree's, and runs
:func:`~conveyor_integrations.bench.overhead.measure_overhead` of each in alternating rounds,
so both see the same machine. It prints each case's median and best µs/token and new/old.
Run:  .venv/bin/python scripts/hot_path_compare.py df544db [--rounds 40]
"""

from __future__ import annotations

import argparse
import collections
import importlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _extract(rev: str, into: Path) -> None:
    archive = into / "old.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev,
                    "conveyor_integrations"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    (into / "conveyor_integrations").rename(into / "conveyor_old")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("rev", help="the commit to compare against (e.g. df544db)")
    ap.add_argument("--rounds", type=int, default=40, help="alternating rounds (each: 3 runs)")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _extract(opts.rev, Path(tmp))
        sys.path.insert(0, tmp)
        sys.path.insert(0, str(ROOT))
        old = importlib.import_module("conveyor_old.bench.overhead")
        new = importlib.import_module("conveyor_integrations.bench.overhead")
        res: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        for r in range(opts.rounds):
            pair = [("old", old), ("new", new)]
            for tag, mod in pair if r % 2 == 0 else pair[::-1]:
                for row in mod.measure_overhead(repeat=3):
                    res[(row["case"], tag)].append(row["us_per_token"])
    print(f"{'case':<50} {'old med':>8} {'new med':>8} {'old best':>8} {'new best':>8}  new/old")
    for case in dict.fromkeys(k[0] for k in res):
        o, n = res[(case, "old")], res[(case, "new")]
        print(f"{case:<50} {statistics.median(o):8.2f} {statistics.median(n):8.2f} "
              f"{min(o):8.2f} {min(n):8.2f}  {statistics.median(n) / statistics.median(o):.3f}")


if __name__ == "__main__":
    main()
