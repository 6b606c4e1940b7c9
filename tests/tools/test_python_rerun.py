"""Python tool: once statements ran, the program is never run again (side effects happen once).

A compile-time warning (``"\\d"``, ``1 is 1``) is not an error: the statements already ran, so
the result is theirs. The side effect is real: with ``isolation="process"`` the program appends
to a file of the test, and in the sandbox no complete re-run is started.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import pytest

from conveyor_integrations.events import CallStarted, FieldDone, TextChunk
from conveyor_integrations.parsing.statements import split_text
from conveyor_integrations.tools import python_sandbox
from conveyor_integrations.tools.python import PythonExecution

WARNS = 'x = "\\d"\nif 1 is 1:\n    print("warned")\n'


async def partial(code: str, ex: PythonExecution, pieces: list[str] | None = None) -> str:
    await ex.start(CallStarted(0, "c1", "run_python"))
    for piece in split_text("statement", code) if pieces is None else pieces:
        await ex.feed(TextChunk(0, ("code",), piece))
    await ex.feed(FieldDone(0, ("code",), code))
    return await ex.finish({"code": code})


def test_compile_warning_does_not_rerun_side_effects(tmp_path: Path) -> None:
    log = tmp_path / "log"
    code = f"with open({str(log)!r}, 'a') as f:\n    f.write('ran ')\n" + WARNS + "print('end')\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # the isolation="process" warning
        ex = PythonExecution(isolation="process")
    out = asyncio.run(partial(code, ex))
    assert log.read_text() == "ran "                         # exactly once
    assert out.endswith("warned\nend\n") and len(ex.statements) == 4


def test_no_complete_rerun_after_statements_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    whole: list[str] = []
    real = python_sandbox.Worker.run

    async def spy(self: python_sandbox.Worker, src: str, *, whole: bool, timeout: float,
                  note: str = "") -> python_sandbox.Reply:
        if whole:
            whole_runs.append(src)
        return await real(self, src, whole=whole, timeout=timeout, note=note)

    whole_runs = whole
    monkeypatch.setattr(python_sandbox.Worker, "run", spy)
    out = asyncio.run(partial("print('once')\n" + WARNS, PythonExecution()))
    assert out.count("once") == 1 and "warned" in out and whole == []


def test_final_code_that_only_adds_statements_runs_the_rest() -> None:
    out = asyncio.run(partial("print(1)\nprint(2)\n", PythonExecution(), ["print(1)\n"]))
    assert out == "1\n2\n"


def test_syntax_error_after_statements_ran_is_reported_not_rerun(tmp_path: Path) -> None:
    log = tmp_path / "log"
    code = f"open({str(log)!r}, 'a').write('ran ')\nprint('x')\nx = (\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ex = PythonExecution(isolation="process")
    out = asyncio.run(partial(code, ex, [code.split("\n")[0] + "\n", "print('x')\n"]))
    assert "SyntaxError" in out and "x\n" not in out
    assert log.read_text() == "ran "
