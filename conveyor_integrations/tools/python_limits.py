"""What a Python tool program may use (:class:`Limits`), the worker's reply, and the cap on live
workers per process (:func:`set_max_workers`).

The cap is a semaphore shared by every event loop and thread of the process: a call that would
start one worker too many waits until another call's worker is gone. Example::

    >>> Limits(wall_s=5, memory_mb=512).memory_mb
    512
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Limits", "Reply", "WorkerSlots", "parse_reply", "set_max_workers", "worker_config",
           "worker_environment", "worker_slots"]

_MB = 1 << 20
_STATUSES = frozenset({"ok", "error", "syntax", "exit"})


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
    disk_mb: int = 256
    """All files together in the sandbox's work dir, home and ``/tmp`` (the size of its
    tmpfs; RAM of the host, freed with the worker). ``isolation="sandbox"`` only."""
    open_files: int | None = 256
    """Open file descriptors (``RLIMIT_NOFILE``)."""
    allow_subprocess: bool = False
    """Let the program start processes (fork, subprocess, multiprocessing). Off by default:
    then the sandbox's seccomp filter refuses every new process."""
    processes: int | None = 64
    """``RLIMIT_NPROC`` when subprocesses are allowed. In the sandbox it counts the processes
    of the sandbox's own user namespace only (Linux >= 5.14), but Linux does not enforce it
    when the host runs as root (the sandbox's uid maps to uid 0); see ``SECURITY.md``."""
    max_output: int = 100_000
    """Characters of output returned; the middle of a longer output is cut out."""
    max_reply_bytes: int = 4 * _MB
    """Largest protocol frame the host accepts from the worker; a longer one (or any reply
    that is not what the protocol says) kills the worker with a clear error."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables for the program (nothing else of the host's is passed)."""


@dataclass
class Reply:
    """The outcome of one piece sent to a worker."""

    status: str
    """``ok``, ``error`` (an exception), ``syntax`` (did not compile), ``exit`` (SystemExit) or
    ``killed`` (a limit stopped the worker, or it died, or it broke the protocol)."""
    text: str = ""
    """The traceback, or for ``killed`` the sandbox's message."""
    line: int = 0
    """First line of the piece in the whole program."""
    started: float = 0.0
    """``time.perf_counter()`` when the piece began (the worker's clock; CLOCK_MONOTONIC on
    Linux, comparable with the host's)."""
    ended: float = 0.0


def parse_reply(msg: dict[str, Any]) -> Reply | None:
    """A worker's ``run`` reply, checked field by field (``None``: not a valid reply)."""
    status, text, line = msg.get("status"), msg.get("text", ""), msg.get("line", 0)
    t0, t1 = msg.get("t0", 0.0), msg.get("t1", 0.0)
    if (status not in _STATUSES or not isinstance(text, str) or type(line) is not int
            or not all(type(t) in (int, float) for t in (t0, t1))):
        return None
    return Reply(status, text, line, float(t0), float(t1))


def worker_config(limits: Limits) -> dict[str, Any]:
    """The limits as the worker reads them (bytes, not MiB)."""
    def mb(v: int | None) -> int | None:
        return None if v is None else int(v) * _MB

    return {"cpu_s": limits.cpu_s, "memory": mb(limits.memory_mb),
            "file_size": mb(limits.file_size_mb), "open_files": limits.open_files,
            "allow_subprocess": limits.allow_subprocess, "processes": limits.processes}


def worker_environment(root: str, limits: Limits) -> dict[str, str]:
    """The worker's whole environment (``root``: its folder, with ``home`` and ``tmp``)."""
    home, tmp = os.path.join(root, "home"), os.path.join(root, "tmp")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": tmp,
           "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": os.path.join(home, ".matplotlib"),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.update(limits.env)
    return env


class WorkerSlots:
    """A counting semaphore usable from any event loop or thread (FIFO, cancellation-safe)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._lock = threading.Lock()
        self._waiters: collections.deque[tuple[asyncio.AbstractEventLoop,
                                               asyncio.Future[None]]] = collections.deque()

    async def acquire(self) -> None:
        """Wait for a free slot."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.used < self.size and not self._waiters:
                self.used += 1
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, fut))
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove((loop, fut))
                    granted = False
                except ValueError:
                    granted = True                 # the slot was handed over: pass it on
            if granted:
                self.release()
            raise

    def release(self) -> None:
        """Free a slot, or hand it to the first waiter."""
        with self._lock:
            if self._waiters and self.used <= self.size:
                loop, fut = self._waiters.popleft()
                loop.call_soon_threadsafe(_grant, fut)
            else:
                self.used -= 1

    def resize(self, size: int) -> None:
        """Change the number of slots (waiters are let in as slots free up)."""
        with self._lock:
            self.size = size
            while self._waiters and self.used < self.size:
                loop, fut = self._waiters.popleft()
                self.used += 1
                loop.call_soon_threadsafe(_grant, fut)


def _grant(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_SLOTS = WorkerSlots(int(os.environ.get("CONVEYOR_PYTHON_MAX_WORKERS", "0") or 0)
                     or max(4, 2 * (os.cpu_count() or 2)))


def worker_slots() -> WorkerSlots:
    """The process-wide cap on live workers (default ``max(4, 2 * CPUs)``, or
    ``CONVEYOR_PYTHON_MAX_WORKERS``)."""
    return _SLOTS


def set_max_workers(n: int) -> None:
    """At most ``n`` workers alive at once in this process; further calls wait."""
    if n < 1:
        raise ValueError("the worker cap must be at least 1")
    _SLOTS.resize(n)
