"""The demo's pieces on their own: the quiet output, the start display, the lane view's time
order and the closing timeline."""

from __future__ import annotations

import asyncio
import io
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

import pytest

pytest.importorskip("rich")

from rich.console import Console

from conveyor_integrations.demo_progress import Stage, StartProgress
from conveyor_integrations.demo_quiet import QuietOutput, telling_lines
from conveyor_integrations.demo_timeline import bar_cells, timeline
from conveyor_integrations.demo_view import LaneView


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's logs (kept after a failure) go to the test's folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def plain(width: int = 100) -> Console:
    return Console(file=io.StringIO(), width=width, color_system=None)


def text_of(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined, no-any-return]


# -- QuietOutput -------------------------------------------------------------------------------
def test_quiet_output_keeps_every_kind_of_writer_off_the_screen(
        capfd: pytest.CaptureFixture[str]) -> None:
    with QuietOutput() as quiet:
        os.write(2, b"from C: fd 2\n")
        print("python stderr", file=sys.stderr)
        print("python stdout")
        t = threading.Thread(target=lambda: os.write(1, b"a thread\n"))
        t.start()
        t.join()
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('a child\\n')"],
                       check=True)
        print("ours", file=quiet.terminal)
        log = quiet.log_path
    captured = capfd.readouterr()
    assert captured.out == "ours\n" and captured.err == ""
    for line in ("from C: fd 2", "python stderr", "python stdout", "a thread", "a child"):
        assert line in quiet.captured()
    assert log is not None and not os.path.exists(log)      # removed after a clean run
    print("after")                                          # descriptors and sys.* are back
    assert capfd.readouterr().out == "after\n"


def test_quiet_output_shows_the_root_cause_when_the_block_fails(
        capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), QuietOutput() as quiet:
        os.write(2, b"noise\nERROR the engine core died: CUDA missing\nnext line\n")
        raise RuntimeError("Engine core initialization failed. See root cause above.")
    err = capfd.readouterr().err
    assert "ERROR the engine core died: CUDA missing\nnext line" in err
    assert "noise" not in err and f"whole log: {quiet.log_path}" in err
    assert quiet.log_path is not None and os.path.exists(quiet.log_path)   # kept to read
    os.unlink(quiet.log_path)


def test_quiet_output_says_nothing_for_expected_errors(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KeyError), QuietOutput(expected=(KeyError,)):
        os.write(2, b"ERROR noise\n")
        raise KeyError("explains itself")
    assert capfd.readouterr().err == ""


def test_quiet_output_disabled_passes_everything(capfd: pytest.CaptureFixture[str]) -> None:
    with QuietOutput(enabled=False) as quiet:
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n" and quiet.captured() == ""


def test_telling_lines_start_at_the_first_error() -> None:
    log = "\n".join(["warning"] * 50 + ["Traceback (most recent call last):", "  f()",
                                         "OSError: boom"] + ["shutdown"] * 50)
    assert telling_lines(log, limit=3) == ["Traceback (most recent call last):", "  f()",
                                           "OSError: boom"]
    assert telling_lines("a\nb", limit=5) == ["a", "b"]


# -- StartProgress ----------------------------------------------------------------------------
async def test_a_stage_shows_details_from_a_thread_and_its_failure() -> None:
    console = plain()

    async def convert(stage: Stage) -> str:
        def work() -> str:
            stage.describe("converting the bundled model (first run only)")
            stage.detail("de-quantizing the GGUF weights")
            return "/cache/model"
        return await asyncio.to_thread(work)

    async def fail(stage: Stage) -> None:
        raise OSError("no space left")

    with pytest.raises(OSError), StartProgress(console) as progress:
        assert await progress.run("bundled model", convert) == "/cache/model"
        await progress.run("starting vLLM engine", fail, detail="25-80 s")
    out = text_of(console)
    assert "✓ converting the bundled model (first run only)" in out
    assert "de-quantizing the GGUF weights" in out
    assert "✗ starting vLLM engine" in out and "failed: OSError: no space left" in out
    assert progress.stages[0].notes == ["de-quantizing the GGUF weights"]
    assert all(stage.seconds is not None for stage in progress.stages)


# -- LaneView ---------------------------------------------------------------------------------
@dataclass
class Ran:
    source: str
    started: float
    ended: float
    status: str = "ok"
    output: str = ""


def rows(console: Console) -> list[str]:
    return [line.split("│", 1)[1].strip() for line in text_of(console).splitlines()]


def test_a_statement_reported_late_is_shown_before_the_line_decoded_while_it_ran() -> None:
    console, ran = plain(), []
    with LaneView(console, 0.0, lambda: ran) as view:
        view.model("time.sleep(1.5)\n", now=4.20)
        view.fed("time.sleep(1.5)\n", now=4.20)
        view.model("inv = np.linalg.inv(a)\n", now=4.70)     # decoded while the sleep runs
        assert rows(console) == ["time.sleep(1.5)"]          # 4.70 waits for the statement
        ran.append(Ran("time.sleep(1.5)\n", 4.26, 5.76))
        view.poll(now=5.80)
    out = rows(console)
    assert out[1].startswith("✓  1 time.sleep(1.5)") and out[2] == "inv = np.linalg.inv(a)"
    assert [ln.split()[0] for ln in text_of(console).splitlines()] == ["4.20", "4.26", "4.70"]


def test_the_last_statement_comes_before_the_closing_fence() -> None:
    console, ran = plain(), []
    with LaneView(console, 0.0, lambda: ran) as view:
        view.fed("time.sleep(1.5)\n", now=18.00)
        view.model("```\n", now=18.43)
        view.decode_ended(18.45)
        ran.append(Ran("time.sleep(1.5)\n", 18.01, 19.51, output="done\nline 2\n"))
    out = rows(console)
    assert out[0].startswith("✓  1 time.sleep(1.5)") and out[0].endswith("→ done")
    assert out[1].endswith("→ line 2")                     # the output's other lines follow
    assert out[2:] == ["```", "decoding ended"]


def test_a_failed_statement_releases_the_rows_behind_it() -> None:
    console, ran = plain(), []
    with LaneView(console, 0.0, lambda: ran) as view:
        view.fed("1 / 0\n", now=1.0)
        view.fed("print('never runs')\n", now=1.1)
        ran.append(Ran("1 / 0\n", 1.0, 1.05, status="error", output="ZeroDivisionError"))
        view.model("more text\n", now=2.0)
        assert rows(console)[-1] == "more text"              # not held for statement 2
    assert rows(console)[0].startswith("✗  1 1 / 0")
    assert rows(console)[0].endswith("error  → ZeroDivisionError")


def test_the_live_tail_shows_the_running_statement_and_the_line_being_written() -> None:
    console = Console(file=io.StringIO(), width=100, height=20, force_terminal=True,
                      color_system=None)
    with LaneView(console, 0.0, list) as view:
        view.fed("s = np.linalg.svd(a)\n", now=1.0)
        view.model("print(s[", now=1.5)
        tail = console.render_lines(view._tail)
        shown = ["".join(seg.text for seg in line).rstrip() for line in tail]
    assert any("1 s = np.linalg.svd(a)" in ln and "running 0.5 s" in ln for ln in shown)
    assert shown[-1].endswith("print(s[▌")


# -- timeline ---------------------------------------------------------------------------------
def test_the_timeline_puts_both_runs_on_one_axis() -> None:
    console = plain(90)
    console.print(timeline(decode_s=18.0, ready_s=19.0, tool_after_s=5.0,
                           ran=[(2.0, 2.1), (5.0, 6.5), (18.5, 19.0)], width=46))
    axis, seq, par, tools, legend, verdict = text_of(console).splitlines()
    assert axis.split()[:3] == ["time", "0", "s"] and "20 s" in axis
    per_cell = 23.0 / 46
    assert seq.count("━") == par.count("━") == round(18.0 / per_cell)
    assert seq.count("█") == round(23.0 / per_cell) - round(18.0 / per_cell)
    assert par.count("█") == round(19.0 / per_cell) - round(18.0 / per_cell)
    assert seq.endswith("23.00 s") and par.endswith("19.00 s")
    assert tools.count("█") == sum(bar_cells([(2.0, 2.1), (5.0, 6.5), (18.5, 19.0)], per_cell, 46))
    assert "decoding" in legend
    assert verdict.startswith("saved 4.00 s (17 %)")


def test_bar_cells_mark_short_spans_and_clip_long_ones() -> None:
    assert bar_cells([(0.01, 0.02)], 1.0, 3) == [True, False, False]
    assert bar_cells([(-1.0, 99.0)], 1.0, 3) == [True, True, True]
    assert bar_cells([], 1.0, 2) == [False, False]
