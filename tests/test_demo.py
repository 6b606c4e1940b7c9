"""``conveyor demo`` end to end on a replay of its recorded reply (the real engine is covered by
tests/integration; this one checks the demo's own flow and figures)."""

from __future__ import annotations

import pytest

pytest.importorskip("rich")

from conveyor_integrations.backends import Replay
from conveyor_integrations.demo import REPLY, parse_args, run_demo


async def test_demo_runs_statements_while_the_reply_is_decoded(capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    backend = Replay([REPLY, "The matrix inverts; there are 2262 primes below 20000."],
                     tokens_per_s=100)
    figures = await run_demo(parse_args([]), backend=backend)
    out = capsys.readouterr().out
    assert figures["statements"] == 15                 # every top-level statement ran once
    assert figures["early_statements"] >= 3            # the first ones ran while it wrote
    assert "primes below 20000: 2262" in out and "saved" in out
    assert figures["sequential_s"] > figures["decode_s"]
