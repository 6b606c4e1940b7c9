"""The CodeGen tool: run each top-level statement of generated Python as soon as it is decoded.

The parser cuts the ``code`` argument into complete top-level statements (``unit="statement"``,
:class:`~conveyor_integrations.parsing.statements.StatementSplitter`, which uses ``compile`` to
know that a statement is complete; an indented block is complete when the next column-0 line
arrives). :class:`PythonExecution` sends each one to a persistent sandboxed worker process
(:mod:`~conveyor_integrations.tools.python_sandbox`) the moment it arrives, so the program runs
while the model is still writing it. Statements are queued and run in order by a task of their
own: ``feed`` never waits for a statement to finish, so decoding is never held up by the tool.

An exception stops the run. With ``abort_on_error=True`` the next ``feed`` raises
:class:`~conveyor_integrations.errors.EarlyAbort` with what the program printed up to and
including the traceback, so decoding stops and the model can fix the code sooner.

The result is exactly what running the complete code at once prints (:func:`run_python_code`):
stdout and stderr in the order they were written, then the traceback of an uncaught exception,
or a ``[sandbox] stopped: ...`` line when a limit stopped the program. Once a statement ran, the
program is never run again, so every side effect happens once. ``finish`` checks that the whole
program compiles (warnings do not count): if not, the complete program would run nothing, so it
is run in a fresh worker, where its ``SyntaxError`` is all it prints (nothing runs). When the
final code only adds statements to those fed, the rest runs in the same worker; when it differs
otherwise, the result is what ran, with a ``[sandbox]`` note saying the final code was not run.
With nothing run yet, the complete code runs at once. (Timing-dependent programs aside: the
wall-clock limit adds up the statements' times, and ``Limits.statement_s`` applies to partial
execution only.) The worker starts (~50-100 ms) when the call begins, while the model is still
decoding its first statement.

Generated code runs in the sandbox of :mod:`~conveyor_integrations.tools.python_isolation`
(``isolation="sandbox"``, the default; without it the tool refuses to run, naming the fix) or,
opted out explicitly with ``isolation="process"``, as a plain limited subprocess.

Hand-written (``codeop``/``ast`` via the splitter decide completeness; the rest is ours), because
no package does this: ``code.InteractiveInterpreter`` and RestrictedPython run in-process,
Jupyter kernels (``jupyter_client``) set no resource limits and need ZeroMQ, and llm-sandbox or
epicbox run whole programs in Docker containers; none runs a program statement by statement in a
persistent, resource-limited subprocess with per-statement capture. Usage::

    from conveyor_integrations.tools.python import python_tool
    run_python = python_tool(timeout=30, abort_on_error=True)   # a tool for any agent
    run_python("print(6 * 7)")                                   # '42\\n'

LangChain or LlamaIndex tools come from the same pieces (``partial_python(tool)`` is
``partial_tool(tool, stream="code", unit="statement", execution=lambda: PythonExecution())``)::

    from langchain_core.tools import StructuredTool
    def run_python(code: str) -> str:
        "Run Python code; return what it printed."
        return run_python_code(code)
    lc_tool = partial_python(StructuredTool.from_function(run_python), abort_on_error=True)
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..errors import EarlyAbort
from ..events import CallStarted, FieldDone, ItemDone, TextChunk
from ..partial import partial_tool
from .python_isolation import Isolation, check_isolation
from .python_sandbox import (
    Limits,
    Reply,
    Worker,
    arun_python_code,
    render,
    run_python_code,
    run_whole,
)

if TYPE_CHECKING:
    from ..scheduler import Scheduler
    from ..spec import ToolExecutor

__all__ = ["Isolation", "Limits", "PythonExecution", "StatementResult", "arun_python_code",
           "partial_python", "python_tool", "run_python", "run_python_code"]

_STOPS = ("error", "syntax", "killed")
_CHANGED = ("[sandbox] the final code differs from the statements that ran; it was not run "
            "again (their side effects would happen twice)\n")
run_python: Callable[[str], str]
"""The ready tool, ``python_tool()``: made (and registered) on first use, see ``__getattr__``."""


@dataclass
class StatementResult:
    """One statement run by a :class:`PythonExecution`."""

    source: str
    status: str
    """``ok``, ``error``, ``syntax``, ``exit`` or ``killed`` (see ``Reply.status``)."""
    output: str
    """What the statement wrote (stdout and stderr, then its traceback)."""
    line: int
    started: float
    """``time.perf_counter()`` when it began running (comparable with the host's clock)."""
    ended: float


class PythonExecution:
    """Runs the statements of a ``code`` argument in a sandboxed worker as they are decoded.

    Implements :class:`~conveyor_integrations.partial.PartialExecution`::

        @partial_tool(stream="code", unit="statement", execution=lambda: PythonExecution())
        def run_python(code: str) -> str:
            return run_python_code(code)

    ``statements`` lists what ran, with per-statement output and times. ``isolation``:
    ``"sandbox"`` (default; raises ``SandboxUnavailable`` here if it cannot be had) or
    ``"process"`` (no security boundary, warned once).
    """

    def __init__(self, *, field: str = "code", limits: Limits | None = None,
                 abort_on_error: bool = False, isolation: Isolation = "sandbox") -> None:
        check_isolation(isolation)
        self.field = field
        self.limits = limits or Limits()
        self.abort_on_error = abort_on_error
        self.isolation: Isolation = isolation
        self.statements: list[StatementResult] = []
        self._pieces: list[str] = []
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._worker: Worker | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop: Reply | None = None          # what stopped the run
        self._busy = 0.0                         # seconds the worker spent running statements

    async def start(self, call: CallStarted) -> None:
        """Spawn the worker (its interpreter starts while the model decodes)."""
        await self._ensure_worker()

    async def _ensure_worker(self) -> Worker:
        if self._worker is None:
            self._worker = await Worker.spawn(self.limits, isolation=self.isolation)
            self._runner = asyncio.ensure_future(self._run_queue(self._worker))
        return self._worker

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        """Queue a complete statement; raise ``EarlyAbort`` once a statement failed (if asked)."""
        if not isinstance(event, TextChunk) or event.path != (self.field,):
            return
        stop = self._stop
        if self.abort_on_error and stop is not None and stop.status in _STOPS:
            raise EarlyAbort(self._abort_message(stop))
        self._pieces.append(event.text)
        await self._ensure_worker()
        self._queue.put_nowait(event.text)

    def _abort_message(self, stop: Reply) -> str:
        worker = self._worker
        out = worker.output() if worker is not None else b""
        return render(out, stop.text if stop.status == "killed" else "", self.limits.max_output)

    async def _run_queue(self, worker: Worker) -> None:
        lim = self.limits
        while (src := await self._queue.get()) is not None:
            if self._stop is not None:
                continue                          # the run stopped; keep draining the queue
            budget = lim.wall_s - self._busy
            if lim.statement_s is not None and lim.statement_s < budget:
                timeout, note = lim.statement_s, (
                    f"[sandbox] stopped: a statement ran past its wall-clock limit of "
                    f"{lim.statement_s:g} s\n")
            else:
                timeout, note = budget, (f"[sandbox] stopped: the program ran past its "
                                         f"wall-clock limit of {lim.wall_s:g} s\n")
            begin = worker.output_size()
            t0 = asyncio.get_running_loop().time()
            reply = await worker.run(src, whole=False, timeout=timeout, note=note)
            self._busy += asyncio.get_running_loop().time() - t0
            out = worker.output(begin).decode("utf-8", "replace")
            if reply.status == "killed":
                out += reply.text
            self.statements.append(StatementResult(src, reply.status, out, reply.line,
                                                   reply.started, reply.ended))
            if reply.status != "ok":
                self._stop = reply

    async def finish(self, args: dict[str, Any]) -> str:
        """Wait for the queued statements; return the result of the complete program."""
        code = args.get(self.field)
        if not isinstance(code, str):
            raise TypeError(f"{self.field!r} must be a string, not {type(code).__name__}")
        try:
            if self._runner is not None:
                self._queue.put_nowait(None)
                await self._runner
            worker = self._worker
            if worker is None or not self.statements:      # nothing ran: run it all at once here
                return await run_whole(await self._ensure_worker(), code)
            if not any(s.status != "syntax" for s in self.statements):
                await self.cancel()                        # nothing ran: run it all, fresh
                return await self._fresh(code)
            if not await self._compiles(worker, code):
                await self.cancel()      # a SyntaxError: the complete program runs nothing
                return await self._fresh(code)
            return await self._result(worker, code)
        finally:
            await self.cancel()

    async def _fresh(self, code: str) -> str:
        return await arun_python_code(code, limits=self.limits, isolation=self.isolation)

    async def _result(self, worker: Worker, code: str) -> str:
        fed, stop, note = "".join(self._pieces), self._stop, ""
        if fed != code and code.startswith(fed) and stop is None:
            self._pieces.append(code[len(fed):])           # the statements not fed yet
            self._queue = asyncio.Queue()
            self._queue.put_nowait(code[len(fed):])
            self._queue.put_nowait(None)
            await self._run_queue(worker)
            stop = self._stop
        elif not code.startswith(fed):
            note = _CHANGED
        if stop is not None and stop.status == "killed":
            note = stop.text + note
        result = render(worker.output(), note, self.limits.max_output)
        if self.abort_on_error and stop is not None and stop.status in _STOPS:
            raise EarlyAbort(result)   # the model may still be writing: stop it now
        return result

    async def _compiles(self, worker: Worker, code: str) -> bool:
        if worker.alive:
            return await worker.check(code)
        checker = await Worker.spawn(self.limits, isolation=self.isolation, slot=False)
        try:                                    # the worker was stopped by a limit
            return await checker.check(code)
        finally:
            await checker.kill()

    async def cancel(self) -> None:
        """Kill the worker's process group, reap it and remove its folder. Idempotent."""
        runner, worker = self._runner, self._worker
        if runner is not None and not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        if worker is not None:
            await worker.kill()


def python_tool(name: str = "run_python", *, timeout: float | None = None,
                abort_on_error: bool = False, limits: Limits | None = None,
                scheduler: Scheduler | None = None,
                isolation: Isolation = "sandbox",
                executor: ToolExecutor | None = None) -> Callable[[str], str]:
    """A ready ``run_python(code: str) -> str`` tool that runs statements as they are decoded.

    ``timeout`` is the wall-clock limit of the whole program (``Limits.wall_s``);
    ``abort_on_error`` stops decoding at the first failing statement. The function is decorated
    with ``partial_tool(stream="code", unit="statement", execution=...)`` and registered with
    ``scheduler`` (default: the process-wide one). ``isolation`` as for
    :class:`PythonExecution`, checked here. ``executor`` runs each call's worker elsewhere (a
    :class:`~conveyor_integrations.executors.RayExecutor` puts it in a Ray actor on its node)::

        >>> run = python_tool("py_demo", timeout=10)
        >>> run("print('hi')")
        'hi\\n'
    """
    check_isolation(isolation)
    lim = limits or Limits()
    if timeout is not None:
        lim = dataclasses.replace(lim, wall_s=timeout)

    def run_python(code: str) -> str:
        """Run Python code in a sandboxed subprocess and return what it printed (stdout and
        stderr, then the traceback if it failed)."""
        return run_python_code(code, limits=lim, isolation=isolation)

    run_python.__name__ = run_python.__qualname__ = name
    return cast(Callable[[str], str], partial_python(
        run_python, limits=lim, abort_on_error=abort_on_error, scheduler=scheduler,
        isolation=isolation, executor=executor))


def partial_python(tool: Any, *, field: str = "code", limits: Limits | None = None,
                   abort_on_error: bool = False, scheduler: Scheduler | None = None,
                   isolation: Isolation = "sandbox", executor: ToolExecutor | None = None) -> Any:
    """Make ``tool`` (a function, LangChain or LlamaIndex tool taking the program in ``field``)
    run its statements as they are decoded, with :class:`PythonExecution`. Same as
    ``partial_tool(tool, stream=field, unit="statement", execution=lambda: PythonExecution())``::

        lc_tool = partial_python(StructuredTool.from_function(run_python), abort_on_error=True)
    """
    check_isolation(isolation)

    def make() -> PythonExecution:
        return PythonExecution(field=field, limits=limits, abort_on_error=abort_on_error,
                               isolation=isolation)

    return partial_tool(tool, stream=field, unit="statement", execution=make,
                        scheduler=scheduler, executor=executor)


def __getattr__(name: str) -> Any:
    # ``run_python`` is made on first use, so importing this module registers nothing
    if name == "run_python":
        tool = globals()["run_python"] = python_tool()
        return tool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
