"""``conveyor bench --tasks``: whole agent tasks, three ways, through LangChain and LlamaIndex.

::

    conveyor bench --tasks                                   # replay at 50 and 100 tokens/s
    conveyor bench --tasks --families research,sql --frameworks langchain --runs 3
    conveyor bench --tasks --backend vllm                    # the real engine, forced turns

For each family, framework and rate, ``--runs`` runs take the family's tasks in turn; each run
runs the task once per mode (sequential, complete-call, partial; the order turns with each run)
through the agent, from the user's message to the final answer. The tools' results and the
answers of the three modes are compared, and every call's work is checked to have run exactly
once. On the real engine a fourth run per task is partial with vLLM's prefix cache emptied
before each turn (variant ``no prefix cache``), to show what the cache saves on the next turn's
prefill. Writes ``tasks.json``, ``tasks.md`` and one timeline PNG per family to ``--out``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from .records import MODES
from .task_records import TaskRecord, summarize_tasks
from .task_runner import TaskBench
from .tasks import FAMILIES, Family, Task
from .workload_base import Env

__all__ = ["forced_turns", "main_tasks", "run_tasks", "task_modes", "task_problems"]


def forced_turns(task: Task) -> Any:
    """Sampling that forces the real engine to decode turn ``k`` of ``task`` exactly."""
    def force(k: int) -> dict[str, Any]:
        return {"temperature": 0.0, "max_tokens": 4096,
                "structured_outputs": {"choice": [task.turns[min(k, len(task.turns) - 1)]]}}
    return force


def task_modes(args: Any) -> tuple[str, ...]:
    """The modes a run of the task bench compares (``--speculative`` adds speculative calls,
    declared and learned)."""
    return ((*MODES, "speculative", "learned") if getattr(args, "speculative", False)
            else MODES)


def task_problems(got: dict[str, TaskRecord]) -> list[str]:
    """What is wrong with one run's modes: answers or tool results that differ, work that did
    not run exactly once."""
    problems = []
    answers = {r.answer for r in got.values()}
    results = {tuple(r.results) for r in got.values()}
    if len(answers) > 1:
        problems.append("the modes' final answers differ")
    if len(results) > 1:
        problems.append("the modes' tool results differ")
    for mode, r in got.items():
        for t in r.turns:
            if t.work_expected != t.work_done:
                problems.append(f"{mode} turn {t.index}: work asked {t.work_expected}, "
                                f"ran {t.work_done}")
    return problems


async def _one(bench: TaskBench, task: Task, engine: Any, rate: float | None, run: int,
               backend_name: str, reset_cache: bool = False) -> TaskRecord:
    if engine is None:
        from ..backends.replay import Replay

        backend = bench.backend(Replay(list(task.turns), tokens_per_s=rate, seed=run))
    else:
        backend = bench.backend(engine, forced_turns(task))

        async def reset(k: int) -> None:
            # never what an earlier run left (its prompts are this run's: tool results too);
            # the variant empties it before every turn
            if k == 0 or reset_cache:
                await engine.reset_prefix_cache()

        backend.before = reset
    return await bench.run(task, backend, rate=rate, backend_name=backend_name, run=run)


async def _family(family: Family, env: Env, framework: str, rates: list[float | None],
                  engine: Any, args: Any, tick: Any) -> tuple[list[TaskRecord], list[str]]:
    records: list[TaskRecord] = []
    problems: list[str] = []
    modes = task_modes(args)
    benches = {m: TaskBench(family, env, m, framework=framework) for m in modes}
    name = "vllm" if engine is not None else "replay"
    try:
        if engine is not None:      # compile each forced turn's grammar once, untimed
            for task in family.tasks[:args.runs]:
                try:
                    await _one(benches["sequential"], task, engine, None, 0, "warm-up")
                except Exception as exc:  # noqa: BLE001 - the measured runs will say more
                    problems.append(f"{family.name}/{task.name} warm-up: "
                                    f"{type(exc).__name__}: {exc}")
        for rate in rates:
            for run in range(args.runs):
                task = family.tasks[run % len(family.tasks)]
                order = modes[run % len(modes):] + modes[:run % len(modes)]
                got: dict[str, TaskRecord] = {}
                for mode in order:
                    tick(f"{family.name}/{task.name} {mode} {framework}")
                    try:
                        got[mode] = await _one(benches[mode], task, engine, rate, run, name)
                    except Exception as exc:  # noqa: BLE001 - one failed run must not lose all
                        problems.append(f"{family.name}/{task.name} run {run} {mode} "
                                        f"{framework}: {type(exc).__name__}: {exc}")
                records += [got[m] for m in modes if m in got]
                problems += [f"{family.name}/{task.name} run {run} {framework}: {p}"
                             for p in task_problems(got)]
                if engine is not None:
                    tick(f"{family.name}/{task.name} partial, no prefix cache")
                    try:
                        rec = await _one(benches["partial"], task, engine, rate, run, name,
                                         reset_cache=True)
                    except Exception as exc:  # noqa: BLE001 - as for the modes
                        problems.append(f"{family.name}/{task.name} run {run} partial, no "
                                        f"prefix cache: {type(exc).__name__}: {exc}")
                    else:
                        rec.variant = "no prefix cache"
                        records.append(rec)
    finally:
        for bench in benches.values():
            with contextlib.suppress(Exception):
                bench.close()
    return records, problems


async def run_tasks(args: Any, progress: Any = None) -> dict[str, Any]:
    """Run the task families; return every figure (what ``tasks.json`` holds).

    ``args``: ``families``, ``frameworks``, ``rates`` (comma-separated strings), ``runs``,
    ``search_latency``, ``backend`` ("replay" or "vllm") and ``model``."""
    from ..tools.search import aclose_shared_client
    from .search_server import SearchServer
    from .shop_db import make_shop_db

    families = [FAMILIES[f] for f in args.families.split(",")]
    frameworks = args.frameworks.split(",")
    engine: Any = None
    rates: list[float | None] = [float(r) for r in args.rates.split(",")]
    if args.backend == "vllm":
        from ..backends.vllm_engine import VLLMEngine

        engine, rates = VLLMEngine(args.model), [None]
    extra = 1 if engine is not None else 0
    total = (len(families) * len(frameworks) * len(rates) * args.runs
             * (len(task_modes(args)) + extra))
    task_id = progress.add_task("tasks", total=total) if progress is not None else None

    def tick(description: str) -> None:
        if progress is not None:
            progress.update(task_id, description=description, advance=1)

    records: list[TaskRecord] = []
    problems: list[str] = []
    started = time.perf_counter()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="conveyor-tasks-") as tmp, \
            SearchServer(latency_s=args.search_latency) as server:
        orders = getattr(args, "shop_orders", 400_000)      # tests use a smaller shop
        env = Env(server.url, make_shop_db(Path(tmp) / "shop.db", orders=orders), Path(tmp))
        try:
            for family in families:
                for framework in frameworks:
                    got, bad = await _family(family, env, framework, rates, engine, args, tick)
                    records += got
                    problems += bad
        finally:
            await aclose_shared_client()
            if engine is not None:
                await engine.aclose()
    return {"backend": args.backend, "rates": rates, "runs": args.runs,
            "search_latency_s": args.search_latency, "frameworks": frameworks,
            "wall_s": round(time.perf_counter() - started, 1), "problems": problems,
            "summary": summarize_tasks(records), "records": [r.as_dict() for r in records]}


def _plots(out: Path, records: list[TaskRecord]) -> list[str]:
    """One PNG per family and framework: the run whose partial task time is the median, at
    50 tokens/s (or the first rate, or the engine)."""
    from .task_report import plot_task

    made = []
    rates = list(dict.fromkeys(r.rate for r in records))
    rate = 50.0 if 50.0 in rates else (rates[0] if rates else None)
    for family, framework in dict.fromkeys((r.family, r.framework) for r in records):
        cell = [r for r in records if (r.family, r.framework, r.rate) == (family, framework, rate)
                and not r.variant]
        partial = sorted((r for r in cell if r.mode == "partial"), key=lambda r: r.latency_s)
        if not partial:
            continue
        pick = partial[len(partial) // 2]
        runs = [r for m in (*MODES, "speculative", "learned") for r in cell
                if r.run == pick.run and r.mode == m]
        where = "the engine" if rate is None else f"{rate:g} tokens/s"
        title = f"{family} / {pick.task} ({framework}) at {where}"
        made.append(str(plot_task(out / f"task_{family}_{framework}.png", title, runs)))
    return made


def main_tasks(args: Any, console: Any, out: Path) -> int:
    """``conveyor bench --tasks``: run, print the table, write ``tasks.json``, ``tasks.md`` and
    the timelines to ``out``."""
    import asyncio
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .task_records import TurnRecord
    from .task_report import speculation_table, tasks_table

    with Progress(TextColumn("{task.description:<52}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        results = asyncio.run(run_tasks(args, progress))
    table = tasks_table(results["summary"])
    speculative = speculation_table(results["summary"])
    if speculative:
        table += "\n\n" + speculative
    console.print(table)
    for problem in results["problems"]:
        console.print(f"[yellow]problem:[/yellow] {problem}")
    records = [TaskRecord(**{**r, "turns": [TurnRecord(**{k: v for k, v in t.items()
                                                           if k not in _DERIVED})
                                            for t in r["turns"]]})
               for r in results["records"]]
    results["plots"] = _plots(out, records)
    (out / "tasks.json").write_text(json.dumps(results, indent=1))
    (out / "tasks.md").write_text(table + "\n")
    console.print(f"wrote {out / 'tasks.json'}, {out / 'tasks.md'} and "
                  f"{len(results['plots'])} timelines in {results['wall_s']} s of runs")
    return 1 if results["problems"] else 0


_DERIVED = ("decode_s", "tool_tail_s", "gap_s")
