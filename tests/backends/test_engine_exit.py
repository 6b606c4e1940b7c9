"""A plain script on ``VLLMEngine``: no ``if __name__ == "__main__":`` guard, no ``close()``.

The hooks that make it work are checked without vLLM; then ONE subprocess starts an engine on
the bundled model the way a first script does, and must answer and exit cleanly.
"""

from __future__ import annotations

import gc
import multiprocessing.spawn
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import warnings
from typing import Any

import pytest

from conveyor_integrations.backends.vllm_engine import VLLMEngine
from conveyor_integrations.backends.vllm_exit import spawn_without_main

SCRIPT = '''
import asyncio
from conveyor_integrations.backends import ChatRequest, VLLMEngine

engine = VLLMEngine()
request = ChatRequest([{"role": "user", "content": "What is the capital of France?"}],
                      sampling={"max_tokens": 12, "temperature": 0.0})

async def ask():
    return "".join(d for d in [d async for d in engine.stream(request)] if isinstance(d, str))

print("ANSWER:", asyncio.run(ask()), flush=True)
'''


def _main_keys(data: dict[str, Any]) -> set[str]:
    return {"init_main_from_path", "init_main_from_name"} & set(data)


def test_spawns_from_this_thread_skip_main_inside_the_block_only() -> None:
    before = _main_keys(multiprocessing.spawn.get_preparation_data("x"))
    seen: list[set[str]] = []
    with spawn_without_main():
        assert _main_keys(multiprocessing.spawn.get_preparation_data("x")) == set()
        other = threading.Thread(
            target=lambda: seen.append(_main_keys(multiprocessing.spawn.get_preparation_data("x"))))
        other.start()
        other.join()
    assert seen == [before]                                 # another thread: untouched
    assert _main_keys(multiprocessing.spawn.get_preparation_data("x")) == before


def test_close_at_exit_runs_unless_cancelled(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "exit.py"
    script.write_text(textwrap.dedent("""
        import gc
        from conveyor_integrations.backends.vllm_exit import close_at_exit

        class Thing:
            def __init__(self, name):
                self.name = name
            def _close_at_exit(self):
                print("closed", self.name, flush=True)

        kept, dropped, cancelled = Thing("kept"), Thing("dropped"), Thing("cancelled")
        close_at_exit(kept)
        close_at_exit(dropped)
        close_at_exit(cancelled)()
        del dropped                       # still closed at exit (its engine would still run)
        gc.collect()
        print("end", flush=True)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.splitlines() == ["end", "closed dropped", "closed kept"]


def test_tools_the_template_cannot_show_warn_once() -> None:
    engine = VLLMEngine("/nowhere")
    engine._tool_rendering = None
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        engine._warn_if_tools_unseen()
        engine._warn_if_tools_unseen()
    assert len(record) == 1 and "does not see the tools" in str(record[0].message)
    engine._tool_rendering = "system"
    engine._warned_tools = False
    engine._warn_if_tools_unseen()                         # shown in a system message: quiet
    del engine
    gc.collect()


@pytest.mark.vllm
def test_script_without_guard_or_close_answers_and_exits_cleanly(
        bundled_model: pathlib.Path, vllm_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    script = tmp_path / "first_script.py"                 # run by path: spawn would re-run it
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          check=False, timeout=600, cwd=tmp_path, env={**os.environ, **vllm_env})
    both = done.stdout + done.stderr
    assert done.returncode == 0, both[-4000:]
    answer = [ln for ln in done.stdout.splitlines() if ln.startswith("ANSWER:")]
    assert len(answer) == 1 and len(answer[0]) > len("ANSWER: "), both[-4000:]
    for bad in ("Traceback", "EngineDeadError", "NoneType"):
        assert bad not in both, both[-4000:]
