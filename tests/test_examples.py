"""The README's examples run as they are (replay backends) and print what they demonstrate."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _run(name: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                          check=False,
                          timeout=300, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_core_overlap_prints_both_modes_and_the_reduction() -> None:
    out = _run("core_overlap.py")
    for label in ("sequential", "partial", "reduction"):
        assert any(line.startswith(label) for line in out.splitlines()), out


def test_langchain_agent_starts_the_search_before_decoding_ends() -> None:
    pytest.importorskip("langchain.agents")
    out = _run("langchain_agent.py")
    lines = out.splitlines()
    assert any(ln.startswith("sequential web_search: ran after decoding ended") for ln in lines)
    assert any(ln.startswith("partial    web_search: started") and "before decoding ended" in ln
               for ln in lines), out
    answers = [ln for ln in lines if "answer: Marseille is the largest" in ln]
    assert len(answers) == 2, out            # the same answer with and without partial execution
    assert "saved" in lines[-1]


def test_llamaindex_agent_starts_each_tool_before_decoding_ends() -> None:
    pytest.importorskip("llama_index.core")
    out = _run("llamaindex_agent.py")
    sequential, partial = out.split("== partial execution ==")
    for part, where in ((sequential, "after decoding ended"), (partial, "before decoding ended")):
        starts = [ln for ln in part.splitlines() if ln.startswith("  ") and "(" in ln]
        assert len(starts) == 3 and all(where in ln for ln in starts), out
        assert "answer: Paris has the Louvre" in part
