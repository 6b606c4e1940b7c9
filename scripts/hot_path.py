"""Print the library's own cost per decoded token (parse + dispatch, no tool work, no pacing).

The measuring is :func:`conveyor_integrations.bench.overhead.measure_overhead`; this prints its
rows. Run:  .venv/bin/python scripts/hot_path.py [--repeat N]
"""

from __future__ import annotations

import argparse

from conveyor_integrations.bench.overhead import measure_overhead


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=5, help="runs per case; the best is kept")
    opts = ap.parse_args()
    print(f"{'case':<52} {'tokens':>7}  {'µs/token':>8}  {'at 50 tok/s':>11}")
    for row in measure_overhead(repeat=opts.repeat):
        print(f"{row['case']:<52} {row['tokens']:>7}  {row['us_per_token']:8.2f}  "
              f"{100 * row['share_at_50_tok_s']:10.3f}%")


if __name__ == "__main__":
    main()
