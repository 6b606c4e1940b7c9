"""The benchmark measurements run, report what they promise, and lose or repeat no work.

No timing thresholds: these figures depend on the machine; the benchmark reports them.
"""

from __future__ import annotations

import doctest
import math
import threading

import pytest

from conveyor_integrations.bench import overhead, scale
from conveyor_integrations.bench.overhead import measure_overhead
from conveyor_integrations.bench.scale import measure_scale

OVERHEAD_KEYS = {"case", "tokens", "us_per_token", "share_at_50_tok_s"}
SCALE_KEYS = {"streams", "tokens", "wall_s", "aggregate_tokens_per_s", "dispatch_p50_ms",
              "dispatch_p99_ms", "dispatch_max_ms", "pieces", "lost", "duplicated"}


def _conveyor_threads() -> set[int | None]:
    return {t.ident for t in threading.enumerate() if t.name.startswith("conveyor")}


def test_overhead_rows() -> None:
    before = _conveyor_threads()
    rows = measure_overhead(repeat=1, sizes=(300,))
    assert [r["case"].split(",")[0] for r in rows] == ["hermes", "openai deltas", "hermes"]
    for r in rows:
        assert set(r) == OVERHEAD_KEYS
        assert r["tokens"] > 0 and r["us_per_token"] > 0
        assert r["share_at_50_tok_s"] == pytest.approx(r["us_per_token"] * 50 / 1e6)
    assert _conveyor_threads() <= before


@pytest.mark.parametrize("tokens_per_s", [None, 2000.0])
def test_scale_loses_and_repeats_nothing(tokens_per_s: float | None) -> None:
    before = _conveyor_threads()
    seen: list[str] = []
    rows = measure_scale(concurrency=(1, 8), tokens_per_s=tokens_per_s, calls_per_request=3,
                         progress=seen.append)
    assert len(seen) == 2
    assert [r["streams"] for r in rows] == [1, 8]
    for r in rows:
        assert set(r) == SCALE_KEYS
        assert (r["lost"], r["duplicated"]) == (0, 0)
        assert r["pieces"] == r["streams"] * 3 * 3     # 3 calls of 3 pieces per request
        assert r["tokens"] > 0 and r["wall_s"] > 0 and r["aggregate_tokens_per_s"] > 0
        assert not math.isnan(r["dispatch_p50_ms"])
        assert r["dispatch_p50_ms"] <= r["dispatch_p99_ms"] <= r["dispatch_max_ms"]
    assert _conveyor_threads() <= before


def test_scale_even_call_counts_and_pieces() -> None:
    rows = measure_scale(concurrency=(3,), tokens_per_s=None, calls_per_request=4,
                         pieces_per_call=2)
    assert (rows[0]["pieces"], rows[0]["lost"], rows[0]["duplicated"]) == (3 * 4 * 2, 0, 0)


@pytest.mark.parametrize("module", [overhead, scale], ids=lambda m: m.__name__)
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0
