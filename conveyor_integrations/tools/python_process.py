"""Process plumbing of the Python worker: its command line, bounded and checked reply frames,
and ending its whole process tree.

Nothing the worker sends is trusted: :func:`recv` refuses a frame longer than the cap before
reading it, and anything but a JSON object (bad UTF-8, bad JSON, nesting that exhausts the
decoder) raises :class:`ProtocolError`. In the sandbox the tree is ended through a pidfd on the
sandbox's pid-namespace init (checked to be bwrap's child, so a reused pid is never signalled):
when the init dies the kernel kills every process of the namespace. Example::

    >>> ProtocolError("a reply frame of 9 bytes").args[0]
    'a reply frame of 9 bytes'
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from .python_isolation import SANDBOX_WORKER, bwrap_command, seccomp_programs
from .python_limits import Limits, worker_config, worker_environment, worker_slots

__all__ = ["WORKER_SCRIPT", "ProtocolError", "cleanup", "prepare", "read_info", "recv",
           "stop_tree"]

WORKER_SCRIPT = str(Path(__file__).with_name("python_worker.py"))
_INTERPRETER = ("-s", "-P", "-B")


class ProtocolError(Exception):
    """The worker sent something the protocol does not allow."""


def prepare(limits: Limits, root: str,
            sandboxed: bool) -> tuple[list[str], dict[str, str], str, list[int], int | None]:
    """The worker's command, environment, cwd, fds to pass (closed by the caller after the
    spawn) and the read end of bwrap's info pipe (``None`` without the sandbox)."""
    cfg = worker_config(limits)
    if not sandboxed:
        for sub in ("work", "home", "tmp"):
            os.mkdir(os.path.join(root, sub), 0o700)
        cmd = [sys.executable, *_INTERPRETER, WORKER_SCRIPT, json.dumps(cfg)]
        return cmd, worker_environment(root, limits), os.path.join(root, "work"), [], None
    general, noproc = seccomp_programs()
    cfg["sandbox_root"] = "/sandbox"
    cfg["noproc_bpf"] = None if limits.allow_subprocess else noproc.hex()
    sec_r, sec_w = os.pipe()
    try:
        os.write(sec_w, general)          # a few hundred bytes: fits in the pipe's buffer
    finally:
        os.close(sec_w)
    info_r, info_w = os.pipe()
    cmd = [*bwrap_command(WORKER_SCRIPT, limits.disk_mb, sec_r, info_w),
           sys.executable, *_INTERPRETER, SANDBOX_WORKER, json.dumps(cfg)]
    return cmd, worker_environment("/sandbox", limits), root, [sec_r, info_w], info_r


def read_info(fd: int | None, bwrap_pid: int, state: dict[str, Any]) -> int | None:
    """Read bwrap's ``{"child-pid": ...}`` and keep a pidfd on that process in ``state``."""
    if fd is None:
        return None
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 65536)
        pid = json.loads(data).get("child-pid")
    except (OSError, ValueError, AttributeError):
        return None
    if type(pid) is not int or pid <= 1:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError):
        ppid = -1
    if ppid != bwrap_pid:                 # not bwrap's child (any more): do not keep it
        os.close(pidfd)
        return None
    state["pidfd"] = pidfd
    return pid


async def recv(reader: asyncio.StreamReader, cap: int) -> dict[str, Any] | None:
    """One reply frame (``None``: the worker is gone), at most ``cap`` bytes long."""
    try:
        head = await reader.readexactly(4)
        size = int.from_bytes(head, "big")
        if size > cap:
            raise ProtocolError(f"a reply frame of {size} bytes; the cap is {cap}")
        body = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    try:
        msg = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ProtocolError(f"a reply that is not JSON ({type(exc).__name__})") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a reply that is not a JSON object")
    return msg


def _kill_group(pgid: int | None) -> None:
    if pgid is not None and pgid > 1:            # never 0: that would be our own group
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def stop_tree(state: dict[str, Any]) -> None:
    """Kill the worker's whole tree (the host's child then exits and must be reaped)."""
    if state["sandboxed"]:
        pidfd = state.get("pidfd")
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)   # the namespace's init
            elif state["reaper"] is not None:
                os.kill(state["reaper"], signal.SIGKILL)   # bwrap: --die-with-parent does it
        except OSError:
            pass
        return
    _kill_group(state["worker"])
    try:
        if state["reaper"] is not None:
            os.kill(state["reaper"], signal.SIGTERM)       # the reaper ends and reaps the rest
    except OSError:
        pass


def cleanup(state: dict[str, Any], root: str, cap_fd: int) -> None:
    """End the tree if still running, close the files, remove the folder, free the slot."""
    if not state["reaped"]:
        stop_tree(state)
    for name in ("pidfd",):
        fd = state.get(name)
        state[name] = None
        if fd is not None:
            os.close(fd)
    if cap_fd >= 0:
        try:
            os.close(cap_fd)
        except OSError:
            pass
    shutil.rmtree(root, ignore_errors=True)
    if state.get("slot"):
        state["slot"] = False
        worker_slots().release()
