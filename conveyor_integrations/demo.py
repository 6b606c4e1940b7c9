"""``conveyor demo``: a code-writing agent on a real vLLM, its program run while it is written.

Turn 1: the model writes a Python program in a fenced block. Each complete top-level statement
runs in a sandboxed worker as soon as it has been decoded, while the model goes on writing; the
model's lines and each statement's run are shown as they happen, on one clock, in time order.
Turn 2: the program's output goes back to the model, which answers. At the end the same
program runs again after decoding (what agent frameworks do today) and a timeline shows both.

By default the engine decodes a recorded program, forced token by token with vLLM's structured
outputs (a single allowed choice): SmolLM2-135M cannot reliably write a program whose tool time
is worth overlapping, but the decoding is the real engine's and the program's work is real.
``--free`` lets the model write its own program (with ``abort_on_error``: a failing statement
stops decoding at once). What vLLM, torch and transformers print goes to a log that is shown
only when something fails (``--verbose`` shows it as it comes). Example::

    >>> args = parse_args(["--free", "--verbose"])
    >>> args.free, args.verbose, args.max_tokens
    (True, True, 800)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .backends.base import Backend, BackendError
from .demo_progress import Stage, StartProgress
from .demo_quiet import QuietOutput
from .demo_timeline import timeline
from .demo_turns import NoProgram, answer_turn, code_turn
from .partial import partial_tool
from .scheduler import Scheduler

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["ANSWER_TOKENS", "PROGRAM", "REPLY", "TASK", "main", "parse_args", "run_demo"]

PROGRAM = '''import numpy as np
rng = np.random.default_rng(7)
a = rng.standard_normal((2000, 2000))
print("mean of a:", round(float(a.mean()), 4))
inv = np.linalg.inv(a)
print("a @ inv is the identity:", bool(np.abs(a @ inv - np.eye(2000)).max() < 1e-6))
s = np.linalg.svd(a, compute_uv=False)
print("largest singular value:", round(float(s[0]), 2))
primes = [n for n in range(2, 300000) if all(n % d for d in range(2, int(n ** 0.5) + 1))]
print("primes below 300000:", len(primes))
'''
REPLY = ("I'll check the matrix and count the primes with this program:\n\n```python\n"
         + PROGRAM + "```\n")
TASK = ("Write a Python program that builds a random 2000x2000 matrix, checks that it can be "
        "inverted, prints its largest singular value and counts the primes below 300000.")
ANSWER_TOKENS = 200
"""The answer turn's token limit: far above a one-sentence answer (SmolLM2: ~25 tokens)."""
_ENGINE_HINT = "25-80 s on 2 CPU cores; the first start on a machine is the slowest"


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    sampling: dict[str, Any] = {"temperature": 0.0, "max_tokens": args.max_tokens}
    if args.free:
        sampling["repetition_penalty"] = 1.15   # a 135M model loops without it
    else:   # OpenAICompatible sends it in extra_body
        sampling["structured_outputs"] = {"choice": [REPLY]}
    return sampling


async def run_demo(args: argparse.Namespace, backend: Backend | None = None, *,
                   console: Console | None = None) -> dict[str, float]:
    """Run the demo; returns its figures (seconds, counts; ``answer_complete`` is 1 or 0).

    ``backend`` overrides the one ``args`` name (tests pass the session's engine, or a
    ``Replay`` of the recorded reply); it is started if it has a ``start``, and left open.
    Unless ``args.verbose``, descriptors 1 and 2 go to a log for the run (see
    :mod:`~conveyor_integrations.demo_quiet`); ``console`` (default: one on the original
    stdout) is where the demo writes.
    """
    from rich.console import Console

    with QuietOutput(enabled=not args.verbose, expected=(NoProgram,)) as quiet:
        width, height = _terminal_size(quiet.terminal)
        con = console or Console(file=quiet.terminal, highlight=False, soft_wrap=True,
                                 width=width, height=height)
        where = (f"the server at {args.base_url}" if args.base_url else
                 f"in-process vLLM ({args.model or 'bundled SmolLM2-135M-Instruct'})")
        if backend is not None and type(backend).__name__ != "VLLMEngine":
            where = f"a {type(backend).__name__} backend"
        con.print(f"[bold]conveyor demo[/]: tool partial execution on {where}")
        own = backend is None
        backend = await _start(args, backend, con)
        try:
            return await _turns(args, backend, con)
        finally:
            if own:   # a backend passed in (the test session's engine) stays open
                await backend.aclose()


def _terminal_size(file: Any) -> tuple[int | None, int | None]:
    """The terminal's size (descriptors 1 and 2 no longer lead to it: rich cannot ask them);
    off a terminal, ``$COLUMNS`` or 100 columns (rich's 80 would cut the statements short)."""
    try:
        size = os.get_terminal_size(file.fileno())
    except (AttributeError, OSError, ValueError):
        return (None if os.environ.get("COLUMNS", "").isdigit() else 100), None
    return size.columns, size.lines


async def _start(args: argparse.Namespace, backend: Backend | None, con: Console) -> Backend:
    """The backend, started under the progress display (the bundled model converted first)."""
    if backend is None and args.base_url:
        from .backends.openai_compatible import OpenAICompatible

        return OpenAICompatible(base_url=args.base_url, model=args.served_model or "default")
    if backend is not None:
        starter = getattr(backend, "start", None)
        if starter is not None:
            with StartProgress(con, redirect=args.verbose) as progress:
                await progress.run("starting the engine", lambda _stage: starter(), done="ready")
        return backend
    with StartProgress(con, redirect=args.verbose) as progress:
        from .backends.vllm_engine import VLLMEngine

        model = args.model
        if model is None:
            model = str(await progress.run("bundled model", _bundled_model,
                                           detail="looking in the cache"))
        engine = VLLMEngine(model)
        try:
            await progress.run("starting vLLM engine", lambda _stage: engine.start(),
                               detail=_ENGINE_HINT, done="ready")
        except BaseException:
            with contextlib.suppress(Exception):
                await engine.aclose()
            raise
        return engine


async def _bundled_model(stage: Stage) -> str:
    from .backends.bundled_model import bundled_model_path

    def say(message: str) -> None:
        if not stage.notes:
            stage.describe("converting the bundled model (first run only)")
        stage.detail(message)

    path = await asyncio.to_thread(bundled_model_path, progress=say)
    stage.detail(f"{'converted into' if stage.notes else 'cached in'} {path}")
    return str(path)


async def _turns(args: argparse.Namespace, backend: Backend, con: Console) -> dict[str, float]:
    from .tools.python import PythonExecution, run_python_code

    sched = Scheduler()
    runs: list[PythonExecution] = []

    def make() -> PythonExecution:
        runs.append(PythonExecution(abort_on_error=args.free))
        return runs[-1]

    def run_python(code: str) -> str:
        return run_python_code(code)

    tool = partial_tool(run_python, stream="code", unit="statement", execution=make,
                        scheduler=sched)
    messages: list[dict[str, Any]] = [{"role": "user", "content": TASK}]
    con.print()
    con.print(f"{'':8}  [bold]user[/]  │ {TASK}", highlight=False)
    if not args.free:
        con.print("[dim](the engine is constrained to decode a recorded program; "
                  "--free lets the model write its own)[/]")
    try:
        figures = await code_turn(con, backend, sched, tool, messages, runs, _sampling(args),
                                  redirect=args.verbose)
        if not args.no_answer:
            figures["answer_complete"] = await answer_turn(con, backend, messages,
                                                           max_tokens=ANSWER_TOKENS)
    finally:
        sched.close()
    with StartProgress(con, redirect=args.verbose) as progress:
        figures["tool_after_s"] = await progress.run(
            "sequential: the same program, run after decoding", _timed(run_python_code,
                                                                       figures.pop("code")))
    t0 = figures.pop("t0")
    ran = [(st.started - t0, st.ended - st.started) for st in (runs[0].statements if runs else [])]
    figures["sequential_s"] = figures["decode_s"] + figures["tool_after_s"]
    figures["statements"] = float(len(ran))
    figures["early_statements"] = float(sum(1 for start, _ in ran if start < figures["decode_s"]))
    con.print()
    con.print(timeline(decode_s=figures["decode_s"], ready_s=figures["result_ready_s"],
                       tool_after_s=figures["tool_after_s"],
                       ran=[(start, start + dur) for start, dur in ran],
                       width=max(20, min(100, con.width - 26))))
    return figures


def _timed(fn: Callable[[str], object], code: str) -> Callable[[Stage], Awaitable[float]]:
    async def work(stage: Stage) -> float:
        t0 = time.perf_counter()
        await asyncio.to_thread(fn, code)
        return time.perf_counter() - t0
    return work


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The demo's command line."""
    p = argparse.ArgumentParser(prog="conveyor demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a model directory or name for the in-process engine "
                                   "(default: the bundled SmolLM2-135M-Instruct)")
    p.add_argument("--base-url", help="use a running OpenAI-compatible server instead")
    p.add_argument("--served-model", help="the model name on that server")
    p.add_argument("--free", action="store_true",
                   help="let the model write its own program (a failing statement aborts)")
    p.add_argument("--max-tokens", type=int, default=800)
    p.add_argument("--no-answer", action="store_true", help="skip the second turn")
    p.add_argument("--verbose", action="store_true",
                   help="show what vLLM, torch and transformers print (hidden by default)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``conveyor demo``."""
    from .backends.bundled_model import BundledModelError

    try:
        asyncio.run(run_demo(parse_args(argv)))
    except (NoProgram, BackendError, BundledModelError) as exc:
        print(f"conveyor demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("conveyor demo: interrupted", file=sys.stderr)
        return 130
    return 0

