"""The host side of the Python sandbox: the worker process, complete-program runs.

Generated code never runs in the host process. Each execution gets its own worker process
(:mod:`~conveyor_integrations.tools.python_worker`), started as ``python -s -P -B``:

* with ``isolation="sandbox"`` (the default) inside bubblewrap with its own namespaces, a
  read-only view of the runtime only, a size-capped private tmpfs and a seccomp filter
  (:mod:`~conveyor_integrations.tools.python_isolation`); with ``isolation="process"`` (an
  explicit opt-out, warned once) as a plain subprocess in a fresh temporary folder;
* with a minimal environment built from scratch (``PATH``, ``HOME``, ``TMPDIR``, ``LANG``, a
  fixed ``PYTHONHASHSEED``, one BLAS thread, ``MPLBACKEND=Agg`` and ``Limits.env``): none of the
  host's variables;
* with resource limits set by the worker on itself before it reads any code (:class:`Limits`),
  wall-clock limits enforced here by killing it. At most ``set_max_workers(n)`` workers live at
  once per process; further calls wait for a slot.

The whole process tree dies with the call: in the sandbox, killing its pid-namespace init (by
pidfd) kills everything in it; bwrap's ``--die-with-parent`` and the worker's
``PR_SET_PDEATHSIG`` end it when the host dies. The host trusts nothing the worker sends: frames
are capped (``Limits.max_reply_bytes``) and checked field by field; a worker that breaks the
protocol is killed and the call gets a ``[sandbox] stopped: ...`` error. Everything the program
writes goes to one capture file (stdout and stderr together, in write order); the host reads it.
Example::

    >>> run_python_code("print(sum(range(10)))")
    '45\\n'
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import os
import signal
import tempfile
import weakref
from typing import Any

from .python_isolation import Isolation, check_isolation
from .python_limits import Limits, Reply, parse_reply, worker_slots
from .python_process import ProtocolError, cleanup, prepare, read_info, recv, stop_tree

__all__ = ["Limits", "ProtocolError", "Reply", "Worker", "arun_python_code", "render",
           "run_python_code", "run_whole"]

_LIVE: weakref.WeakSet[Worker] = weakref.WeakSet()


class Worker:
    """One sandboxed worker process; create with ``await Worker.spawn(limits)``.

    ``reaper_pid`` is the host's child (bwrap, or the worker's reaper with
    ``isolation="process"``); ``pid`` is the worker's pid as the worker sees it (inside its pid
    namespace when sandboxed); ``sandbox_pid`` the host pid of the sandbox's init."""

    def __init__(self, limits: Limits, proc: asyncio.subprocess.Process, root: str,
                 cap_fd: int, state: dict[str, Any]) -> None:
        self.limits, self.proc, self.root, self._cap_fd = limits, proc, root, cap_fd
        self.reaper_pid = proc.pid
        self.pid: int | None = None
        self.sandbox_pid: int | None = None
        self.sandboxed = bool(state["sandboxed"])
        self.workdir = "/sandbox/work" if self.sandboxed else os.path.join(root, "work")
        self.closed = False
        self._kept = b""                 # the output, kept when a limit killed the worker
        self._state = state
        state["reaper"] = proc.pid
        self._finalizer = weakref.finalize(self, cleanup, state, root, cap_fd)
        _LIVE.add(self)

    @classmethod
    async def spawn(cls, limits: Limits | None = None, *, isolation: Isolation = "sandbox",
                    slot: bool = True) -> Worker:
        """Start a worker; returns once it is ready for code. ``slot``: count it against the
        process-wide cap (waiting for a free slot)."""
        limits = limits or Limits()
        check_isolation(isolation)
        sandboxed = isolation == "sandbox"
        if slot:
            await worker_slots().acquire()
        state: dict[str, Any] = {"worker": None, "reaper": None, "reaped": False,
                                 "pidfd": None, "slot": slot, "sandboxed": sandboxed}
        root = tempfile.mkdtemp(prefix="conveyor-python-")
        cap_fd, info = -1, None
        fds: list[int] = []
        try:
            cap_fd = os.open(os.path.join(root, "output"),
                             os.O_CREAT | os.O_RDWR | os.O_APPEND | os.O_CLOEXEC, 0o600)
            cmd, env, cwd, fds, info = prepare(limits, root, sandboxed)
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=cap_fd, cwd=cwd, env=env, start_new_session=True, close_fds=True,
                pass_fds=tuple(fds))
        except BaseException:
            if info is not None:
                os.close(info)
            cleanup(state, root, cap_fd)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        worker = cls(limits, proc, root, cap_fd, state)
        try:
            async with asyncio.timeout(60):
                hello = await worker._recv()
            if hello is None or type(hello.get("pid")) is not int or hello["pid"] <= 1:
                raise RuntimeError("the Python worker failed to start: " +
                                   worker.output()[-2000:].decode("utf-8", "replace"))
            worker.pid = hello["pid"]
            if sandboxed:
                worker.sandbox_pid = read_info(info, proc.pid, state)
            else:
                state["worker"] = worker.pid
        except BaseException:
            await worker.kill()
            raise
        finally:
            if info is not None:
                os.close(info)
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
        except ProtocolError as exc:
            return await self._broken(exc)
        if msg is None:
            return Reply("killed", await self._death())
        reply = parse_reply(msg)
        if reply is None:
            return await self._broken(ProtocolError("a reply with unexpected fields"))
        return reply

    async def check(self, src: str, timeout: float = 30.0) -> bool:
        """Whether ``src`` as a whole compiles (warnings do not count; nothing runs)."""
        if not self.alive:
            return False
        try:
            async with asyncio.timeout(timeout):
                msg = await self._call({"op": "check", "src": src})
        except (TimeoutError, ProtocolError):
            await self.kill()
            return False
        return msg is not None and msg.get("compiles") is True

    async def _broken(self, exc: ProtocolError) -> Reply:
        await self.kill(keep_output=True)
        return Reply("killed", f"[sandbox] stopped: the worker broke the protocol ({exc}); "
                               f"it was killed\n")

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
        return await recv(self.proc.stdout, self.limits.max_reply_bytes)

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
        if rc > 128 and rc - 128 in signal.Signals.__members__.values():
            return f"[sandbox] stopped: the worker died ({signal.Signals(rc - 128).name})\n"
        return f"[sandbox] stopped: the worker exited with status {rc}\n"

    async def kill(self, *, keep_output: bool = False) -> None:
        """Kill the worker and everything it started, reap them, remove the folder, free its
        slot. Idempotent. ``keep_output``: :meth:`output` still gives what was written."""
        if self.closed:
            return
        if self.proc.returncode is None:
            stop_tree(self._state)             # the sandbox's init, or the worker's group
        try:
            try:
                async with asyncio.timeout(5):
                    await asyncio.shield(self.proc.wait())
            except TimeoutError:
                self.proc.kill()
                await asyncio.shield(self.proc.wait())
        finally:
            if keep_output:
                self._kept = self.output()
            self.closed = True
            self._state["reaped"] = self.proc.returncode is not None
            self._finalizer()            # closes the capture file, removes the folder
            _LIVE.discard(self)


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


async def arun_python_code(code: str, *, limits: Limits | None = None,
                           isolation: Isolation = "sandbox") -> str:
    """Run a complete program in a new sandboxed worker; return what it printed.

    The result is stdout and stderr as written, then the traceback of an uncaught exception (or
    a ``[sandbox] stopped: ...`` line when a limit stopped it).
    """
    worker = await Worker.spawn(limits, isolation=isolation)
    try:
        return await run_whole(worker, code)
    finally:
        await worker.kill()


def run_python_code(code: str, *, limits: Limits | None = None,
                    isolation: Isolation = "sandbox") -> str:
    """Synchronous :func:`arun_python_code`, callable from any thread, inside a loop or not.

    >>> print(run_python_code("x = 2\\nprint(x ** 10)\\n1 / 0"), end="")  # doctest: +ELLIPSIS
    1024
    Traceback (most recent call last):
      File "<code>", line 3, in <module>
    ...
    ZeroDivisionError: division by zero
    """
    check_isolation(isolation)
    coro = arun_python_code(code, limits=limits, isolation=isolation)
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

