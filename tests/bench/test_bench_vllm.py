"""The benchmark on the real engine: vLLM decodes exactly the recorded transcript (forced with a
single allowed choice), and every mode runs on it. Uses the session's one engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor_integrations.bench.cli import backend_for
from conveyor_integrations.bench.harness import ModeBench
from conveyor_integrations.bench.records import MODES, RunRecord
from conveyor_integrations.bench.search_server import SearchServer
from conveyor_integrations.bench.workload_base import Env
from conveyor_integrations.bench.workloads import WORKLOADS
from conveyor_integrations.tools.calculator import evaluate

pytestmark = pytest.mark.vllm


async def _run(engine: Any, env: Env, workload: str, mode: str) -> RunRecord:
    wl = WORKLOADS[workload]
    name, text = next(iter(wl.transcripts.items()))
    bench = ModeBench(wl, env, mode)
    try:
        backend, sampling = backend_for(engine, text, None, 0)
        return await bench.run(name, backend, rate=None, backend_name="vllm", sampling=sampling)
    finally:
        bench.close()


async def test_every_mode_on_the_forced_engine(vllm_engine: Any, tmp_path: Path) -> None:
    with SearchServer(latency_s=0.01) as server:
        env = Env(server.url, tmp_path / "unused.db", tmp_path)
        calc = {m: await _run(vllm_engine, env, "calculator", m) for m in MODES}
        valid = {m: await _run(vllm_engine, env, "validation", m) for m in MODES}
    expected = repr(evaluate("86.40 * 1.15 / 4"))       # the "tip" transcript's expression
    assert {r.result for r in calc.values()} == {expected}
    assert calc["partial"].ideal_s is not None and calc["partial"].tokens > 0
    # the engine stops decoding at the invalid field only under partial execution
    assert valid["partial"].aborted and not valid["sequential"].aborted
    assert valid["partial"].tokens < valid["sequential"].tokens
    assert "email" in valid["partial"].result and "email" in valid["sequential"].result


async def test_a_whole_task_on_the_forced_engine_reuses_the_prefix_cache(
        vllm_engine: Any, tmp_path: Path) -> None:
    """A two-turn planner task through create_agent on the engine, forced turn by turn: the
    answer is the recorded one, the plan's steps ran once each, some started while the plan was
    decoded, and the second request found the first turn's prompt in vLLM's prefix cache
    (none of it once the cache is emptied before each turn)."""
    from conveyor_integrations.bench.task_bench import _one
    from conveyor_integrations.bench.task_model import Family, Task
    from conveyor_integrations.bench.task_runner import TaskBench
    from conveyor_integrations.bench.transcripts import hermes

    plan = ('1. calculate("6 * 7")\n2. lookup("population of Lyon")\n'
            '3. calculate("$1 + 1")\njoin()\n')
    task = Task("planner", "tiny", "What is 6 * 7 + 1, and how many people live in Lyon?",
                (hermes("Plan:", ("run_plan", {"plan": plan})), "43, and about 520,000."))
    family = Family("planner", "Planner", ("run_plan",), (task,))
    with SearchServer(latency_s=0.01) as server:
        env = Env(server.url, tmp_path / "unused.db", tmp_path)
        bench = TaskBench(family, env, "partial")
        try:
            cached = await _one(bench, task, vllm_engine, None, 0, "vllm")
            cold = await _one(bench, task, vllm_engine, None, 1, "vllm", reset_cache=True)
        finally:
            bench.close()
    for rec in (cached, cold):
        assert rec.answer.strip() == task.turns[-1] and rec.once_each()
        assert rec.turns[0].work_done == {"step": 3} and rec.ideal_s is not None
        assert any(s < rec.turns[0].decode_end for _, s, _ in rec.turns[0].spans)
    assert cached.turns[1].cached_tokens and cached.turns[1].cached_tokens > 0
    assert cold.turns[1].cached_tokens == 0
