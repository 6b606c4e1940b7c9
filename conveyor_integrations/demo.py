"""``conveyor demo``: a code-writing agent on a real vLLM, its program run while it is written.

Turn 1: the model writes a Python program in a fenced block. Each complete top-level statement
runs in a sandboxed worker as soon as it has been decoded, while the model goes on writing. The
demo prints the model's lines and each statement's run as they happen, on one clock.
Turn 2: the program's output goes back to the model, which answers.
At the end it runs the same program again after decoding (what agent frameworks do today) and
prints both completion times.

By default the engine decodes a recorded program, forced token by token with vLLM's structured
outputs (a single allowed choice): SmolLM2-135M cannot reliably write a program whose tool time
is worth overlapping, but the decoding is the real engine's. ``--free`` lets the model write its
own program (with ``abort_on_error``: a failing statement stops decoding at once).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from .backends.base import Backend, ChatRequest
from .parsing import get_parser
from .partial import partial_tool
from .scheduler import Scheduler
from .turn import TurnCollector, stream_turn

__all__ = ["PROGRAM", "REPLY", "main", "parse_args", "run_demo"]

PROGRAM = '''import time
import numpy as np
rng = np.random.default_rng(7)
a = rng.standard_normal((300, 300))
print("mean of a:", round(float(a.mean()), 4))
time.sleep(1.5)  # stands for loading a data file
inv = np.linalg.inv(a)
print("max |a @ inv - I|:", float(np.abs(a @ inv - np.eye(300)).max()) < 1e-8)
s = np.linalg.svd(a, compute_uv=False)
print("largest singular value:", round(float(s[0]), 2))
time.sleep(1.5)  # stands for a slow service call
primes = [n for n in range(2, 20000) if all(n % d for d in range(2, int(n ** 0.5) + 1))]
print("primes below 20000:", len(primes))
time.sleep(1.5)  # stands for writing a report
print("done")
'''
REPLY = ("I'll check the matrix and count the primes with this program:\n\n```python\n"
         + PROGRAM + "```\n")
TASK = ("Write a Python program that builds a random 300x300 matrix, checks that it can be "
        "inverted, prints its largest singular value and counts the primes below 20000.")


def _backend(args: argparse.Namespace) -> Backend:
    if args.base_url:
        from .backends.openai_compatible import OpenAICompatible

        return OpenAICompatible(base_url=args.base_url, model=args.served_model or "default")
    from .backends.vllm_engine import VLLMEngine

    return VLLMEngine(args.model)


def _sampling(args: argparse.Namespace, backend: Backend) -> dict[str, Any]:
    sampling: dict[str, Any] = {"temperature": 0.0, "max_tokens": args.max_tokens}
    if args.free:
        sampling["repetition_penalty"] = 1.15   # a 135M model loops without it
    else:
        forced = {"choice": [REPLY]}
        if args.base_url:
            sampling["extra_body"] = {"structured_outputs": forced}
        else:
            sampling["structured_outputs"] = forced
    return sampling


async def run_demo(args: argparse.Namespace, backend: Backend | None = None) -> dict[str, float]:
    """Run the demo; returns its figures (seconds). ``backend`` overrides the one ``args`` name
    (tests pass a ``Replay`` of the recorded reply)."""
    from rich.console import Console
    from rich.markup import escape

    from .tools.python import PythonExecution, run_python_code

    con = Console(highlight=False, soft_wrap=True)
    backend = backend if backend is not None else _backend(args)
    con.print("[bold]conveyor demo[/]: tool partial execution on "
              + (f"the server at {args.base_url}" if args.base_url else
                 f"in-process vLLM ({args.model or 'bundled SmolLM2-135M-Instruct'})"))
    t_start = time.perf_counter()
    with con.status("starting the engine (about 25 s on 2 CPU cores)...") as status:
        starter = getattr(backend, "start", None)
        if starter is not None:
            task = asyncio.ensure_future(starter())
            while not task.done():
                status.update(f"starting the engine... {time.perf_counter() - t_start:4.1f} s")
                await asyncio.wait([task], timeout=0.25)
            task.result()
    con.print(f"engine ready in {time.perf_counter() - t_start:.1f} s\n")

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
    con.print(f"[bold]user[/] │ {TASK}")
    if not args.free:
        con.print("[dim](the engine is constrained to decode a recorded program; "
                  "--free lets the model write its own)[/]")
    try:
        figures = await _code_turn(con, backend, sched, tool, messages, runs,
                                   _sampling(args, backend), escape)
        seq_t0 = time.perf_counter()
        await asyncio.to_thread(run_python_code, figures.pop("code"))
        tool_after = time.perf_counter() - seq_t0
        figures["tool_after_s"] = tool_after
        if not args.no_answer:
            await _answer_turn(con, backend, messages, args)
    finally:
        sched.close()
        await backend.aclose()
    decode, ready = figures["decode_s"], figures["result_ready_s"]
    sequential = decode + tool_after
    con.print()
    con.print(f"decoding took            {decode:6.2f} s ({figures['tokens']:.0f} deltas)")
    con.print(f"partial: result ready at {ready:6.2f} s  (tools ran while the model wrote)")
    con.print(f"sequential would end at  {sequential:6.2f} s  (decode, then the same program: "
              f"{tool_after:.2f} s)")
    con.print(f"[bold green]saved {sequential - ready:.2f} s "
              f"({100 * (sequential - ready) / sequential:.0f} %)[/]")
    figures["sequential_s"] = sequential
    figures["statements"] = float(len(runs[0].statements) if runs else 0)
    figures["early_statements"] = float(sum(
        1 for st in (runs[0].statements if runs else [])
        if st.started < figures["decode_end_at"]))
    return figures


async def _code_turn(con: Any, backend: Backend, sched: Scheduler, tool: Any,
                     messages: list[dict[str, Any]], runs: list[Any],
                     sampling: dict[str, Any], escape: Any) -> dict[str, Any]:
    request = ChatRequest(messages=list(messages), sampling=sampling)
    parser = get_parser("fenced_code", tool="run_python", field="code", unit="statement")
    session = sched.session(request.request_id, tools=[tool])
    collector = TurnCollector(session)
    t0 = time.perf_counter()
    line, shown = "", 0

    def show_statements() -> None:
        nonlocal shown
        stmts = runs[0].statements if runs else []
        while shown < len(stmts):
            st = stmts[shown]
            shown += 1
            end = session.decode_end
            when = "while the model writes" if end is None or st.started < end else "after decoding"
            mark = "[green]✓[/]" if st.status == "ok" else f"[red]✗ {st.status}[/]"
            first = st.source.strip().splitlines()[0][:60]
            con.print(f"[cyan]{st.started - t0:6.2f} s  tool  │[/] {mark} statement {shown} "
                      f"[dim]({escape(first)})[/] ran {st.ended - st.started:.2f} s, {when}")
            for out in st.output.rstrip().splitlines()[:4]:
                con.print(f"[cyan]{'':>9} tool  │[/]   [yellow]{escape(out)}[/]")

    async for delta, events in stream_turn(backend, request, parser=parser, session=session):
        collector.add(delta, events)
        piece = delta if isinstance(delta, str) else (delta or {}).get("content") or ""
        if piece:
            line += piece
            while "\n" in line:
                head, line = line.split("\n", 1)
                con.print(f"{time.perf_counter() - t0:6.2f} s  model │ {escape(head)}")
        show_statements()
    if line:
        con.print(f"{time.perf_counter() - t0:6.2f} s  model │ {escape(line)}")
    decode = (session.decode_end or time.perf_counter()) - t0
    turn = collector.result()
    call = turn.calls[0] if turn.calls else turn.aborted_call
    if call is None:
        raise _NoProgram("the model wrote no complete ```python block within --max-tokens; "
                         "nothing to run (small models often loop: try again without --free)")
    try:
        found, output = await sched.aclaim(call.id, spec=tool.conveyor_spec)
        if not found:
            output = await asyncio.to_thread(_run_complete, call.args["code"])
    except Exception as exc:  # noqa: BLE001 - EarlyAbort or the program's error: shown to the model
        output = str(exc)
    ready = time.perf_counter() - t0
    show_statements()
    if turn.abort is not None:
        con.print(f"[red]a statement failed: decoding stopped early[/] "
                  f"({turn.deltas} deltas decoded)")
    con.print(f"{ready:6.2f} s  [bold]tool result ready[/] "
              f"({max(0.0, ready - decode):.2f} s after decoding ended)")
    messages += [{"role": "assistant", "content": turn.text or REPLY},
                 {"role": "user", "content": f"The program printed:\n{output}\n"
                                             "Answer my question in one sentence."}]
    return {"decode_s": decode, "result_ready_s": ready, "tokens": float(turn.deltas),
            "code": call.args["code"], "decode_end_at": session.decode_end or time.perf_counter()}


def _run_complete(code: str) -> str:
    from .tools.python import run_python_code

    return run_python_code(code)


async def _answer_turn(con: Any, backend: Backend, messages: list[dict[str, Any]],
                       args: argparse.Namespace) -> None:
    request = ChatRequest(messages=list(messages), sampling={"temperature": 0.0,
                                                             "max_tokens": 60})
    text = []
    async for delta in backend.stream(request):
        if isinstance(delta, str):
            text.append(delta)
        elif delta.get("content"):
            text.append(str(delta["content"]))
    from rich.markup import escape

    con.print(f"[bold]model[/] │ {escape(''.join(text).strip())}")


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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``conveyor demo``."""
    try:
        asyncio.run(run_demo(parse_args(argv)))
    except _NoProgram as exc:
        print(f"conveyor demo: {exc}", file=sys.stderr)
        return 1
    return 0


class _NoProgram(RuntimeError):
    """The model wrote no complete program to run."""
