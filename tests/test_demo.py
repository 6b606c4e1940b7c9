"""``conveyor demo`` end to end on a replay of its recorded reply (fast; the run on the real
engine is tests/test_demo_engine.py): its flow, its figures, and what it prints."""

from __future__ import annotations

import asyncio
import io
import os
import pathlib
import re
import sys
import tempfile
from typing import Any

import pytest

pytest.importorskip("rich")

from rich.console import Console

from conveyor_integrations import demo
from conveyor_integrations.backends import BackendError, Replay
from conveyor_integrations.demo import ANSWER_TOKENS, PROGRAM, REPLY, parse_args, run_demo

ANSWER = "The matrix inverts, its largest singular value is 89.06 and 25997 primes are below."
LIGHT = (REPLY.replace("2000", "200").replace("300000", "3000"))
"""The recorded reply with less work in it, for the tests that do not need the real work."""
STAMP = re.compile(r"^\s*(\d+\.\d\d) s  (model|tool |     ) │ (.*)$")
NOISE = re.compile(r"warning|traceback|it/s\]|\d+%\|", re.IGNORECASE)



@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's logs (kept after a failure) go to the test's folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def stamped(out: str) -> list[tuple[float, str, str]]:
    """The view's rows: (seconds, lane, text)."""
    return [(float(m[1]), m[2].strip(), m[3]) for m in map(STAMP.match, out.splitlines()) if m]


async def test_demo_runs_statements_while_the_reply_is_decoded(capfd: pytest.CaptureFixture[str]
                                                               ) -> None:
    figures = await run_demo(parse_args([]), backend=Replay([REPLY, ANSWER], tokens_per_s=60))
    captured = capfd.readouterr()
    out = captured.out
    assert figures["statements"] == 10                 # every top-level statement ran once
    assert figures["early_statements"] >= 3            # the first ones ran while it wrote
    assert "primes below 300000: 25997" in out and "saved" in out
    assert figures["sequential_s"] > figures["decode_s"]
    # the view: model and tool lanes on one clock, in time order, short, nothing else in it
    lines = out.splitlines()
    rows = stamped(out)
    times = [t for t, _, _ in rows]
    assert times == sorted(times)
    tools = [text.split()[1] for _, lane, text in rows if lane == "tool"]
    assert tools == [str(k) for k in range(1, 11)]     # each statement once, in order
    model = [text for _, lane, text in rows if lane == "model"]
    assert model[3:-1] == PROGRAM.splitlines()         # the program, line by line
    assert next(text for _, lane, text in rows if not lane) == "decoding ended"
    assert rows[-1][2].startswith("tool result ready")
    assert len(lines) < 60
    assert not [ln for ln in lines if NOISE.search(ln)] and captured.err == ""


async def test_the_answer_sees_the_whole_program_and_is_shown_whole(
        capfd: pytest.CaptureFixture[str]) -> None:
    backend = Replay([LIGHT, ANSWER], tokens_per_s=None)
    figures = await run_demo(parse_args([]), backend=backend)
    out = capfd.readouterr().out
    # the cut answer's cause: the assistant turn held only the prose, not the program, so the
    # model echoed the output back and ran into its token limit
    assert backend.requests[1].messages[1] == {"role": "assistant", "content": LIGHT}
    assert "primes below 3000: 430" in backend.requests[1].messages[2]["content"]
    assert backend.requests[1].sampling["max_tokens"] == ANSWER_TOKENS
    assert f"model │ {ANSWER}" in out
    assert figures["answer_complete"] == 1.0


async def test_an_answer_cut_by_its_token_limit_says_so(capfd: pytest.CaptureFixture[str]
                                                        ) -> None:
    cut = [{"content": "The program printed the largest"}, {"finish_reason": "length"}]
    figures = await run_demo(parse_args([]), backend=Replay([LIGHT, cut], tokens_per_s=None))
    out = capfd.readouterr().out
    assert figures["answer_complete"] == 0.0
    assert f"reached its {ANSWER_TOKENS}-token limit" in out


async def test_the_timeline_closes_the_demo(capfd: pytest.CaptureFixture[str]) -> None:
    figures = await run_demo(parse_args(["--no-answer"]),
                             backend=Replay([LIGHT], tokens_per_s=80))
    lines = capfd.readouterr().out.splitlines()
    end = lines[-6:]
    assert end[0].startswith("time") and "0 s" in end[0]
    assert end[1].startswith("sequential") and end[1].endswith(f"{figures['sequential_s']:.2f} s")
    assert end[2].startswith("partial") and end[2].endswith(f"{figures['result_ready_s']:.2f} s")
    assert end[3].strip().startswith("its tools") and "█" in end[3]
    saved = figures["sequential_s"] - figures["result_ready_s"]
    assert end[5].startswith(f"saved {saved:.2f} s")
    assert "answer_complete" not in figures
    assert any("✓ sequential: the same program, run after decoding" in ln for ln in lines)


class SlowStart(Replay):
    """A backend whose start takes a while and prints what engines print."""

    fail = False

    async def start(self) -> None:
        os.write(2, b"WARNING 12-02 [cpu.py:224] Triton is not installed.\n")
        os.write(1, b"Loading safetensors checkpoint shards: 100% Completed | 1/1\r\n")
        print("dispatcher.py:138: FutureWarning: `torch.distributed.reduce_op` is deprecated",
              file=sys.stderr)                         # what the warnings module writes
        await asyncio.sleep(1.0)
        if self.fail:
            os.write(2, b"Traceback (most recent call last):\nOSError: the root cause\n")
            raise BackendError("Engine core initialization failed. See root cause above.")


def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=100, height=40,
                   color_system=None)


async def test_the_start_shows_progress_and_hides_the_engines_output(
        capfd: pytest.CaptureFixture[str]) -> None:
    console = terminal()
    await run_demo(parse_args(["--no-answer"]), backend=SlowStart([LIGHT], tokens_per_s=None),
                   console=console)
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    elapsed = set(re.findall(r"starting the engine\s+(\d+\.\d) s", screen))
    assert len(elapsed) >= 2                           # redrawn while it starts, with its time
    assert "✓ starting the engine" in screen
    captured = capfd.readouterr()
    assert "Triton" not in captured.out + captured.err + screen
    assert "safetensors" not in captured.out + captured.err + screen
    assert "reduce_op" not in captured.out + captured.err + screen


async def test_a_failed_start_shows_the_root_cause(capfd: pytest.CaptureFixture[str]) -> None:
    backend = SlowStart([LIGHT], tokens_per_s=None)
    backend.fail = True
    console = terminal()
    with pytest.raises(BackendError, match="See root cause above"):
        await run_demo(parse_args([]), backend=backend, console=console)
    err = capfd.readouterr().err
    assert "OSError: the root cause" in err and "whole log:" in err
    assert "✗ starting the engine" in console.file.getvalue()  # type: ignore[attr-defined]


def test_main_reports_a_failed_engine_with_its_cause(capfd: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor_integrations.backends import vllm_engine

    class FailingEngine(SlowStart):
        fail = True

        def __init__(self, model: Any) -> None:
            super().__init__([LIGHT], tokens_per_s=None)

    monkeypatch.setattr(vllm_engine, "VLLMEngine", FailingEngine)
    assert demo.main(["--model", "some/model"]) == 1
    captured = capfd.readouterr()
    assert "starting vLLM engine" in captured.out
    assert "OSError: the root cause" in captured.err
    assert captured.err.rstrip().endswith(
        "conveyor demo: Engine core initialization failed. See root cause above.")


def test_verbose_lets_the_engines_output_through(capfd: pytest.CaptureFixture[str]) -> None:
    args = parse_args(["--verbose", "--no-answer"])
    asyncio.run(run_demo(args, backend=SlowStart([LIGHT], tokens_per_s=None)))
    captured = capfd.readouterr()
    assert "Triton is not installed" in captured.err
    assert "safetensors" in captured.out


async def test_free_mode_stops_decoding_at_a_failing_statement(
        capfd: pytest.CaptureFixture[str]) -> None:
    reply = ("Here it is:\n```python\nx = 1\nprint(1 / 0)\nprint('never')\n"
             + "y = 2\n" * 40 + "```\n")
    backend = Replay([reply, "It divided by zero."], tokens_per_s=100)
    figures = await run_demo(parse_args(["--free"]), backend=backend)
    out = capfd.readouterr().out
    assert backend.requests[0].sampling.get("structured_outputs") is None
    assert backend.emitted[0] < len(backend.tokens(reply))      # decoding was stopped
    rows = stamped(out)
    assert [text.split()[:3] for _, lane, text in rows if lane == "tool"] == [
        ["✓", "1", "x"], ["✗", "2", "print(1"]]
    assert "s  error  → ZeroDivisionError: division by zero" in out
    assert any(text.startswith("a statement failed: decoding stopped early")
               for _, _, text in rows)
    assert "ZeroDivisionError" in out and "never" not in out.split("model │ It divided")[0][-200:]
    assert figures["statements"] == 2
