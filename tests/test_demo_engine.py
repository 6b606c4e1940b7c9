"""``conveyor demo`` on the real engine (the session's one in-process vLLM): what a user sees.

The whole output is short, holds no warning, traceback or progress-bar line of another library,
shows the start display, the two lanes in time order, a complete answer and the timeline.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("rich")

from conveyor_integrations.demo import PROGRAM, parse_args, run_demo

pytestmark = pytest.mark.vllm

STAMP = re.compile(r"^\s*(\d+\.\d\d) s  (model|tool |     ) │ (.*)$")
NOISE = re.compile(r"warning|traceback|error|it/s\]|\d+%\||^\(\w+ pid=\d+\)|^[WIE]\d{4} ",
                   re.IGNORECASE)


async def test_the_demo_on_the_engine(vllm_engine: Any, capfd: pytest.CaptureFixture[str]
                                      ) -> None:
    capfd.readouterr()                                   # whatever the session printed before
    figures = await run_demo(parse_args([]), backend=vllm_engine)
    captured = capfd.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) < 60, captured.out
    assert not [ln for ln in lines + captured.err.splitlines() if NOISE.search(ln)], captured
    assert captured.err == ""
    assert any("✓ starting the engine" in ln for ln in lines)          # the start display
    # the lanes: one clock, in time order, every statement once, the program line by line
    rows = [(float(m[1]), m[2].strip(), m[3]) for m in map(STAMP.match, lines) if m]
    assert [t for t, _, _ in rows] == sorted(t for t, _, _ in rows)
    assert [text.split()[1] for _, lane, text in rows if lane == "tool"] == [
        str(k) for k in range(1, 11)]
    assert [text for _, lane, text in rows if lane == "model"][3:-1] == PROGRAM.splitlines()
    assert figures["statements"] == 10 and figures["early_statements"] >= 1
    # a complete answer: it ended by itself (not at its token limit), with a full sentence
    assert figures["answer_complete"] == 1.0
    answer = next(ln for ln in lines if ln.strip().startswith("model │"))
    assert re.search(r"[.!?]$", answer.strip()), answer
    # the timeline closes it
    assert lines[-6].startswith("time") and lines[-5].startswith("sequential")
    assert lines[-4].startswith("partial") and lines[-1].startswith("saved ")
