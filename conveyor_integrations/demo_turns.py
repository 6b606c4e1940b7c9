"""The demo's two model turns: the program written and run at once, then the answer.

:func:`code_turn` streams the first turn through the parser into the partial Python tool and
shows it in a :class:`~conveyor_integrations.demo_view.LaneView`; :func:`answer_turn` streams
the second turn's text onto the screen and says whether it ended by itself. Example::

    >>> import asyncio, io
    >>> from rich.console import Console
    >>> from conveyor_integrations.backends import Replay
    >>> con = Console(file=io.StringIO(), width=80)
    >>> asyncio.run(answer_turn(con, Replay("The answer.", tokens_per_s=None), [], max_tokens=9))
    1.0
    >>> con.file.getvalue().split("│")[1].strip()
    'The answer.'
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.text import Text

from .backends.base import Backend, ChatRequest
from .demo_view import LaneView
from .events import TextChunk
from .parsing import get_parser
from .turn import TurnCollector, stream_turn

if TYPE_CHECKING:
    from rich.console import Console

    from .scheduler import Scheduler
    from .tools.python import PythonExecution

__all__ = ["NoProgram", "answer_turn", "code_turn"]


class NoProgram(RuntimeError):
    """The model wrote no complete program to run."""


async def code_turn(con: Console, backend: Backend, sched: Scheduler, tool: Any,
                    messages: list[dict[str, Any]], runs: Sequence[PythonExecution],
                    sampling: dict[str, Any], *, redirect: bool = False) -> dict[str, Any]:
    """The first turn: the model writes its program, each statement runs once decoded.

    ``tool`` is the partial ``run_python`` tool on ``sched`` whose executions are appended to
    ``runs``; the turn's messages (the whole reply, then the program's output and the question)
    are appended to ``messages``. Returns ``decode_s``, ``result_ready_s``, ``tokens`` (deltas),
    ``t0`` (its clock's zero, ``time.perf_counter()``) and ``code`` (the program as decoded).
    Raises :class:`NoProgram` when the reply holds no program."""
    request = ChatRequest(messages=list(messages), sampling=sampling)
    parser = get_parser("fenced_code", tool="run_python", field="code", unit="statement")
    session = sched.session(request.request_id, tools=[tool])
    collector = TurnCollector(session)
    raw: list[str] = []
    fed: list[str] = []         # the program's statements, as decoded
    t0 = time.perf_counter()
    with LaneView(con, t0, lambda: runs[0].statements if runs else [],
                  redirect=redirect) as view:
        ticker = asyncio.ensure_future(_tick(view))
        try:
            async for delta, events in stream_turn(backend, request, parser=parser,
                                                   session=session):
                collector.add(delta, events)
                for ev in events:
                    if isinstance(ev, TextChunk) and ev.path == ("code",):
                        fed.append(ev.text)
                        view.fed(ev.text)
                piece = delta if isinstance(delta, str) else (delta or {}).get("content") or ""
                raw.append(piece)
                if session.decode_end is not None:
                    view.model_done(now=session.decode_end)
                    view.decode_ended(session.decode_end)
                view.model(piece)
            decode_end = session.decode_end or time.perf_counter()
            turn = collector.result()
            call = turn.calls[0] if turn.calls else turn.aborted_call
            if call is None:
                raise NoProgram("the model wrote no complete ```python block within "
                                "--max-tokens; nothing to run (small models often loop: try "
                                "again without --free)")
            try:
                found, output = await sched.aclaim(call.id, spec=tool.conveyor_spec)
                if not found:
                    output = await asyncio.to_thread(_run_complete, call.args.get("code", ""))
            except Exception as exc:  # noqa: BLE001 - EarlyAbort or the program's error: shown
                output = str(exc)
            ready = time.perf_counter()
            view.poll(ready)
            if turn.abort is not None:
                view.note(decode_end, f"[red]a statement failed: decoding stopped early[/] "
                                      f"({turn.deltas} deltas decoded)")
            view.note(ready, f"[bold]tool result ready[/] "
                             f"({max(0.0, ready - decode_end):.2f} s after decoding ended)")
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    # the whole reply, program included (the turn's ``text`` is only the prose around it: a
    # model shown only that echoed the output back and ran into its token limit mid-word)
    messages += [{"role": "assistant", "content": "".join(raw)},
                 {"role": "user", "content": f"The program printed:\n{output}\n"
                                             "Answer my question in one sentence."}]
    return {"decode_s": decode_end - t0, "result_ready_s": ready - t0,
            "tokens": float(turn.deltas), "t0": t0,
            "code": call.args.get("code") or "".join(fed)}   # an aborted call: what was decoded


async def _tick(view: LaneView) -> None:
    """Statements that end while no text arrives show up anyway (and the tail's spinner)."""
    while True:
        await asyncio.sleep(0.1)
        view.poll()


def _run_complete(code: str) -> str:
    from .tools.python import run_python_code

    return run_python_code(code)


async def answer_turn(con: Console, backend: Backend, messages: list[dict[str, Any]], *,
                      max_tokens: int) -> float:
    """Stream the model's answer onto ``con``; 1.0 when it ended by itself, else 0.0 (empty,
    or stopped at ``max_tokens``, which is then said)."""
    request = ChatRequest(messages=list(messages),
                          sampling={"temperature": 0.0, "max_tokens": max_tokens})
    con.print()
    con.print(Text.assemble(" " * 10, ("model", "bold blue"), " │ "), end="")
    text, finish = "", None
    async for delta in backend.stream(request):
        piece = delta if isinstance(delta, str) else str(delta.get("content") or "")
        if isinstance(delta, dict):
            finish = delta.get("finish_reason") or finish
        piece = piece.replace("\n", " ")
        if not text:
            piece = piece.lstrip()
        text += piece
        if piece:
            con.print(Text(piece), end="", soft_wrap=True)
    con.print()
    if finish == "length":
        con.print(f"[dim](the answer reached its {max_tokens}-token limit)[/]")
    return 1.0 if text.strip() and finish != "length" else 0.0
