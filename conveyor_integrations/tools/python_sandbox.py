"""The host side of the Python sandbox: limits, the worker process, complete-program runs.

Generated code never runs in the host process. Each execution gets its own worker process
(:mod:`~conveyor_integrations.tools.python_worker`), started as ``python -s -P -B`` with:

* a fresh temporary folder as working directory (``HOME`` and ``TMPDIR`` beside it), removed
  when the worker is closed;
* a minimal environment built from scratch: ``PATH``, ``HOME``, ``TMPDIR``, ``LANG``, a fixed
  ``PYTHONHASHSEED`` (so a program prints the same set order every time it runs, partial or not),
  one thread for BLAS/OpenMP, ``MPLBACKEND=Agg``, plus what ``Limits.env`` adds; none of the
  host's variables, so no credentials leak in. (``-I`` would also ignore ``PYTHONHASHSEED``; since
  the environment is built from nothing, ``-s -P`` give the same isolation.) Site-packages stay
  on, so numpy or matplotlib import as usual;
* its own session and process group (``start_new_session=True``): cancelling kills the whole
  group with ``SIGKILL`` and reaps the worker; a finalizer and ``atexit`` do the same for a worker
  nobody closed, and a worker whose host went away exits at the end of its input;
* resource limits set by the worker on itself before it reads any code (:class:`Limits`), and
  wall-clock limits enforced here, by killing the group.

Everything the program writes goes to one capture file (stdout and stderr together, in write
order, the way ``python prog.py 2>&1`` shows them, tracebacks included); the host reads it. So
the result of a program is the same whether it ran at once or statement by statement. Example::

    >>> run_python_code("print(sum(range(10)))")
    '45\\n'
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import os
import shutil
import signal
import sys
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Limits", "Reply", "Worker", "arun_python_code", "render", "run_python_code"]

WORKER_SCRIPT = str(Path(__file__).with_name("python_worker.py"))
_MB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one program may use. ``None`` leaves a limit unset.

    >>> Limits(wall_s=5, memory_mb=512).memory_mb
    512
    """

    wall_s: float = 60.0
    """Wall-clock seconds of execution for the whole program (statements' times added up)."""
    statement_s: float | None = None
    """Wall-clock seconds for one statement (partial execution only)."""
    cpu_s: int | None = 60
    """CPU seconds of the worker (``RLIMIT_CPU``); past it the worker is killed."""
    memory_mb: int | None = 2048
    """Address space (``RLIMIT_AS``); allocations past it raise ``MemoryError``."""
    file_size_mb: int | None = 64
    """Largest file the program may write, output included (``RLIMIT_FSIZE``)."""
    open_files: int | None = 256
    """Open file descriptors (``RLIMIT_NOFILE``)."""
    allow_subprocess: bool = False
    """Let the program start processes (fork, subprocess, multiprocessing). Off by default."""
    processes: int | None = None
    """``RLIMIT_NPROC`` when subprocesses are allowed. It counts every process of the user and
    Linux does not enforce it for root, so the kill of the process group is what bounds them."""
    max_output: int = 100_000
    """Characters of output returned; the middle of a longer output is cut out."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables for the program (nothing else of the host's is passed)."""


@dataclass
class Reply:
    """The outcome of one piece sent to a worker."""

    status: str
    """``ok``, ``error`` (an exception), ``syntax`` (did not compile), ``exit`` (SystemExit) or
    ``killed`` (a limit stopped the worker, or it died)."""
    text: str = ""
    """The traceback, or for ``killed`` the sandbox's message."""
    line: int = 0
    """First line of the piece in the whole program."""
    started: float = 0.0
    """``time.perf_counter()`` when the piece began (the worker's clock; CLOCK_MONOTONIC on
    Linux, comparable with the host's)."""
    ended: float = 0.0


_LIVE: weakref.WeakSet[Worker] = weakref.WeakSet()


def _kill_group(pgid: int | None) -> None:
    if pgid is not None and pgid > 1:            # never 0: that would be our own group
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _cleanup(state: dict[str, Any], root: str, cap_fd: int) -> None:
    if not state["reaped"]:
        _kill_group(state["worker"])
        try:
            os.kill(state["reaper"], signal.SIGTERM)   # the reaper ends and reaps the rest
        except OSError:
            pass
    try:
        os.close(cap_fd)
    except OSError:
        pass
    shutil.rmtree(root, ignore_errors=True)


class Worker:
    """One sandboxed worker process; create with ``await Worker.spawn(limits)``.

    The host's child is the worker's *reaper* (``reaper_pid``); the worker (``pid``) runs the
    code in a process group of its own, whose id is its pid."""

    def __init__(self, limits: Limits, proc: asyncio.subprocess.Process, root: str,
                 cap_fd: int) -> None:
        self.limits, self.proc, self.root, self._cap_fd = limits, proc, root, cap_fd
        self.reaper_pid = proc.pid
        self.pid: int | None = None
        self.workdir = os.path.join(root, "work")
        self.closed = False
        self._kept = b""                 # the output, kept when a limit killed the worker
        self._state: dict[str, Any] = {"worker": None, "reaper": proc.pid, "reaped": False}
        self._finalizer = weakref.finalize(self, _cleanup, self._state, root, cap_fd)
        _LIVE.add(self)

    @classmethod
    async def spawn(cls, limits: Limits | None = None) -> Worker:
        """Start a worker in a new temporary folder; returns once it is ready for code."""
        limits = limits or Limits()
        root = tempfile.mkdtemp(prefix="conveyor-python-")
        cap_fd = -1
        try:
            for sub in ("work", "home", "tmp"):
                os.mkdir(os.path.join(root, sub), 0o700)
            cap_fd = os.open(os.path.join(root, "output"),
                             os.O_CREAT | os.O_RDWR | os.O_APPEND | os.O_CLOEXEC, 0o600)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-s", "-P", "-B", WORKER_SCRIPT, json.dumps(_config(limits)),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=cap_fd,
                cwd=os.path.join(root, "work"), env=_environment(root, limits),
                start_new_session=True, close_fds=True)
        except BaseException:
            if cap_fd >= 0:
                os.close(cap_fd)
            shutil.rmtree(root, ignore_errors=True)
            raise
        worker = cls(limits, proc, root, cap_fd)
        try:
            async with asyncio.timeout(60):
                hello = await worker._recv()
            if hello is None or not isinstance(hello.get("pid"), int) or hello["pid"] <= 1:
                raise RuntimeError("the Python worker failed to start: " +
                                   worker.output()[-2000:].decode("utf-8", "replace"))
            worker.pid = worker._state["worker"] = hello["pid"]
        except BaseException:
            await worker.kill()
            raise
        return worker

    @property
    def alive(self) -> bool:
        """The worker process is running."""
        return not self.closed and self.proc.returncode is None

    def output(self, start: int = 0, end: int | None = None) -> bytes:
        """Bytes the program wrote so far (``start``/``end``: offsets in the capture file)."""
        if self.closed:
            return self._kept[start:end]
        if end is None:
            end = os.fstat(self._cap_fd).st_size
        return os.pread(self._cap_fd, max(0, end - start), start) if end > start else b""

    def output_size(self) -> int:
        """Bytes written so far."""
        return len(self._kept) if self.closed else os.fstat(self._cap_fd).st_size

    async def run(self, src: str, *, whole: bool, timeout: float, note: str = "") -> Reply:
        """Run the next piece (or, ``whole``, a complete program); ``note`` names the limit."""
        if not self.alive:
            return Reply("killed", "[sandbox] stopped: the worker is not running\n")
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                msg = await self._call({"op": "run", "src": src, "whole": whole})
        except TimeoutError:
            await self.kill(keep_output=True)
            return Reply("killed", note or f"[sandbox] stopped: the program ran past its "
                                           f"wall-clock limit of {timeout:g} s\n")
        if msg is None:
            return Reply("killed", await self._death())
        return Reply(str(msg.get("status")), str(msg.get("text", "")), int(msg.get("line", 0)),
                     float(msg.get("t0", 0.0)), float(msg.get("t1", 0.0)))

    async def check(self, src: str, timeout: float = 30.0) -> bool:
        """Whether ``src`` as a whole compiles without errors or warnings (nothing runs)."""
        if not self.alive:
            return False
        try:
            async with asyncio.timeout(timeout):
                msg = await self._call({"op": "check", "src": src})
        except TimeoutError:
            await self.kill()
            return False
        return bool(msg and msg.get("clean"))

    async def _call(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        assert self.proc.stdin is not None
        body = json.dumps(msg).encode("utf-8", "surrogatepass")
        try:
            self.proc.stdin.write(len(body).to_bytes(4, "big") + body)
            await self.proc.stdin.drain()
        except ConnectionError:
            return None
        return await self._recv()

    async def _recv(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        try:
            head = await self.proc.stdout.readexactly(4)
            reply = await self.proc.stdout.readexactly(int.from_bytes(head, "big"))
            return dict(json.loads(reply))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return None

    async def _death(self) -> str:
        try:
            async with asyncio.timeout(5):
                rc = await self.proc.wait()
        except TimeoutError:
            await self.kill(keep_output=True)
            return "[sandbox] stopped: the worker stopped answering\n"
        await self.kill(keep_output=True)
        if rc == 128 + signal.SIGXCPU:                 # the reaper exits with 128 + signal
            return (f"[sandbox] stopped: the program used more than its CPU-time limit of "
                    f"{self.limits.cpu_s} s\n")
        if rc > 128:
            return f"[sandbox] stopped: the worker died ({signal.Signals(rc - 128).name})\n"
        return f"[sandbox] stopped: the worker exited with status {rc}\n"

    async def kill(self, *, keep_output: bool = False) -> None:
        """Kill the worker's process group and everything it started, reap them all, remove
        the folder. Idempotent. ``keep_output``: :meth:`output` still gives what was written."""
        if self.closed:
            return
        if self.proc.returncode is None:       # (once the reaper exited, all is reaped)
            _kill_group(self.pid)              # the worker's group, at once
        try:
            self.proc.send_signal(signal.SIGTERM)   # the reaper ends what is left, then exits
        except ProcessLookupError:
            pass
        try:
            try:
                async with asyncio.timeout(5):
                    await asyncio.shield(self.proc.wait())
            except TimeoutError:
                _kill_group(self.reaper_pid)
                await asyncio.shield(self.proc.wait())
        finally:
            if keep_output:
                self._kept = self.output()
            self.closed = True
            self._state["reaped"] = self.proc.returncode is not None
            self._finalizer()            # closes the capture file, removes the folder
            _LIVE.discard(self)


def _config(limits: Limits) -> dict[str, Any]:
    def mb(v: int | None) -> int | None:
        return None if v is None else int(v) * _MB

    return {"cpu_s": limits.cpu_s, "memory": mb(limits.memory_mb),
            "file_size": mb(limits.file_size_mb), "open_files": limits.open_files,
            "allow_subprocess": limits.allow_subprocess, "processes": limits.processes}


def _environment(root: str, limits: Limits) -> dict[str, str]:
    home, tmp = os.path.join(root, "home"), os.path.join(root, "tmp")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": tmp,
           "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": os.path.join(home, ".matplotlib"),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.update(limits.env)
    return env


def render(output: bytes, note: str, max_output: int) -> str:
    """The tool's result: what the program wrote, then the sandbox's note (if a limit hit)."""
    text = output.decode("utf-8", "replace")
    if note:
        text += ("\n" if text and not text.endswith("\n") else "") + note
    if len(text) > max_output > 0:
        half = max_output // 2
        cut = len(text) - 2 * half
        text = f"{text[:half]}\n[... {cut} characters cut ...]\n{text[-half:]}"
    return text


async def run_whole(worker: Worker, code: str) -> str:
    """Run the complete program ``code`` in ``worker`` (fresh) and return its result."""
    reply = await worker.run(code, whole=True, timeout=worker.limits.wall_s)
    note = reply.text if reply.status == "killed" else ""
    return render(worker.output(), note, worker.limits.max_output)


async def arun_python_code(code: str, *, limits: Limits | None = None) -> str:
    """Run a complete program in a new sandboxed worker; return what it printed.

    The result is stdout and stderr as written, then the traceback of an uncaught exception (or
    a ``[sandbox] stopped: ...`` line when a limit stopped it).
    """
    worker = await Worker.spawn(limits)
    try:
        return await run_whole(worker, code)
    finally:
        await worker.kill()


def run_python_code(code: str, *, limits: Limits | None = None) -> str:
    """Synchronous :func:`arun_python_code`, callable from any thread, inside a loop or not.

    >>> print(run_python_code("x = 2\\nprint(x ** 10)\\n1 / 0"), end="")  # doctest: +ELLIPSIS
    1024
    Traceback (most recent call last):
      File "<code>", line 3, in <module>
    ...
    ZeroDivisionError: division by zero
    """
    coro = arun_python_code(code, limits=limits)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, "python-tool") as pool:
        return pool.submit(asyncio.run, coro).result()


@atexit.register
def _kill_all() -> None:
    for worker in list(_LIVE):
        worker._finalizer()
