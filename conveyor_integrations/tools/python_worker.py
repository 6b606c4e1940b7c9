"""The worker of the Python tool: runs the pieces of one program in one namespace.

Hand-written, stdlib only, never imported by the host: it is started as a script, ``python -s -P
-B python_worker.py CONFIG``, inside the bubblewrap sandbox (its tmpfs ``/sandbox`` holds the
``work`` dir it runs in; :mod:`~conveyor_integrations.tools.python_isolation`) or, with
``isolation="process"``, in a fresh temporary folder. The process forks once: the parent stays a
*reaper* (a child subreaper that ends and reaps whatever the program left, then exits with the
worker's status; in the sandbox it is the first process of the pid namespace, so its end ends
everything), the child is the *worker*, in a process group of its own, with
``PR_SET_PDEATHSIG=SIGKILL`` (it dies with the reaper). Before it reads any code the worker sets
its limits with ``resource.setrlimit`` (soft = hard: CPU seconds, address space, file size,
open files, no core files; processes only where Linux enforces it), points fds 1 and 2 at the
capture file (unbuffered, so output lands in write order, as ``2>&1`` shows it), fd 0 at
``/dev/null``, installs an audit hook that refuses process creation (unless allowed), signals to
processes outside its group and changes to limits (a guard against accidents with a clear
message), and then, in the sandbox and unless subprocesses are allowed, loads the host-built
seccomp filter that makes the kernel refuse any new process: the boundary against hostile code.

Protocol on the former stdin/stdout: frames of a 4-byte big-endian length and UTF-8 JSON. The
worker first sends ``{"pid": int}``. Requests: ``{"op": "run", "src": str, "whole": bool}`` (the
next piece, numbered by line as in the whole program), ``{"op": "check", "src": str}`` (does the
whole program compile? warnings do not count), ``{"op": "exit"}``. Replies: ``{"status": "ok" |
"error" | "syntax" | "exit", "text": str, "line": int, "t0": float, "t1": float}``,
``{"compiles": bool}``. The host caps and checks every reply. Example, as the host sends a piece::

    frame = json.dumps({"op": "run", "src": "print(1)\\n", "whole": False}).encode()
    proc.stdin.write(len(frame).to_bytes(4, "big") + frame)
"""

from __future__ import annotations
import __future__

import ast
import builtins
import io
import json
import linecache
import os
import re
import resource
import signal
import sys
import time
import traceback
import types
import warnings
from typing import Any

__all__ = ["FILENAME", "main"]

FILENAME = "<code>"
_FUTURE_MASK = 0
for _feature in __future__.all_feature_names:
    _FUTURE_MASK |= getattr(__future__, _feature).compiler_flag
_PROCESS_EVENTS = frozenset({"os.fork", "os.forkpty", "os.exec", "os.spawn", "os.posix_spawn",
                             "os.system", "subprocess.Popen", "pty.spawn"})
_LIMIT_EVENTS = frozenset({"resource.setrlimit", "resource.prlimit"})
_KILL_EVENTS = frozenset({"os.kill", "os.killpg"})
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_MAX_REPLY_TEXT = 65536
# the worker's own tools, taken before any user code can replace them
_read, _write, _compile, _exec, _perf = os.read, os.write, compile, exec, time.perf_counter
_format_only, _TracebackException = traceback.format_exception_only, traceback.TracebackException
_SELF = __file__
_catch_warnings, _dumps, _loads = warnings.catch_warnings, json.dumps, json.loads
_simplefilter = warnings.simplefilter
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 1, 38, 22, 2


def _set_limits(cfg: dict[str, Any]) -> None:
    def limit(res: int, value: int | None, extra: int = 0) -> None:
        if value is None:
            return
        _, hard = resource.getrlimit(res)
        soft = value if hard == resource.RLIM_INFINITY else min(value, hard)
        new_hard = soft + extra if hard == resource.RLIM_INFINITY else min(soft + extra, hard)
        resource.setrlimit(res, (soft, new_hard))

    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_CPU, cfg.get("cpu_s"), 1)      # SIGXCPU at the soft limit, KILL after
    limit(resource.RLIMIT_AS, cfg.get("memory"))
    limit(resource.RLIMIT_FSIZE, cfg.get("file_size"))
    limit(resource.RLIMIT_NOFILE, cfg.get("open_files"))
    if cfg.get("allow_subprocess") and cfg.get("processes") and os.getuid() != 0:
        limit(resource.RLIMIT_NPROC, cfg["processes"])   # Linux does not enforce it for root
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)         # too large a file: OSError, not death


def _refuse(what: str) -> None:
    raise PermissionError(f"[sandbox] {what} is not allowed in this sandbox")


def _install_guard(allow_subprocess: bool) -> None:
    me = os.getpid()
    blocked = _LIMIT_EVENTS | (frozenset() if allow_subprocess else _PROCESS_EVENTS)
    getpgid = os.getpgid

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in blocked:
            _refuse("process creation" if event in _PROCESS_EVENTS else "changing resource limits")
        if event in _KILL_EVENTS:
            target = args[0]
            if target in (0, me, -me):
                return
            try:
                if target > 0 and getpgid(target) == me:
                    return
            except OSError:
                pass
            _refuse(f"signalling process {target}")

    sys.addaudithook(hook)
    if not allow_subprocess:                          # multiprocessing's spawn is not audited
        import _posixsubprocess

        def fork_exec(*args: Any, **kwargs: Any) -> Any:
            _refuse("process creation")

        _posixsubprocess.fork_exec = fork_exec


def _stream(fd: int) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False),    # unbuffered, like -u
                            encoding="utf-8", errors="backslashreplace", write_through=True)


class _Runner:
    """Compiles and runs pieces in the namespace of one ``__main__`` module."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.module = types.ModuleType("__main__")
        self.module.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = self.module
        self.flags = 0          # __future__ flags seen so far, as codeop.Compile keeps them
        self.line = 0           # lines of the program run so far
        self.lines: list[str] = []
        self.pieces = 0
        self.out = _stream(2)
        self.memory_mb = (cfg.get("memory") or 0) >> 20
        self.file_mb = (cfg.get("file_size") or 0) >> 20
        self.reserve: bytearray | None = bytearray(1 << 22)   # freed to report a MemoryError

    def _register(self, src: str) -> None:
        """Let tracebacks and warnings show source lines, numbered as in the whole program."""
        self.lines.extend(_LINES.findall(src))
        linecache.cache[FILENAME] = (sum(map(len, self.lines)), None, self.lines, FILENAME)

    def _compile(self, src: str, offset: int, whole: bool) -> types.CodeType:
        padded = "\n" * offset + src          # line numbers as in the whole program
        if whole or self.pieces == 0:
            code = _compile(padded, FILENAME, "exec", self.flags, dont_inherit=True)
        else:
            tree = _compile(padded, FILENAME, "exec", self.flags | ast.PyCF_ONLY_AST,
                            dont_inherit=True)
            first = tree.body[0] if tree.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                # a string statement after the first one is not the module's docstring
                tree.body.insert(0, ast.Pass(lineno=first.lineno, col_offset=first.col_offset,
                                             end_lineno=first.lineno,
                                             end_col_offset=first.col_offset))
            code = _compile(tree, FILENAME, "exec", self.flags, dont_inherit=True)
        self.flags |= code.co_flags & _FUTURE_MASK
        return code  # type: ignore[no-any-return]

    def _report(self, exc: BaseException, only: bool) -> str:
        self.reserve = None
        if isinstance(exc, MemoryError) and self.memory_mb:
            _note(exc, f"[sandbox] the memory limit is {self.memory_mb} MiB")
        elif isinstance(exc, OSError) and exc.errno == 27 and self.file_mb:   # EFBIG
            _note(exc, f"[sandbox] the file size limit is {self.file_mb} MiB")
        try:
            if only:
                text = "".join(_format_only(type(exc), exc))
            else:
                text = "".join(_without_worker_frames(_TracebackException.from_exception(
                    exc, compact=True)).format())
        except BaseException:  # noqa: BLE001 - e.g. out of memory while formatting
            text = f"{type(exc).__name__}\n"
        self._emit(text)
        return text

    def _emit(self, text: str) -> None:
        try:
            self.out.write(text)
        except BaseException:  # noqa: BLE001, S110 - e.g. the file size limit is reached
            pass

    def run(self, src: str, whole: bool) -> dict[str, Any]:
        t0 = _perf()
        offset = self.line
        self.line += src.count("\n") + src.count("\r") - src.count("\r\n")
        self._register(src)
        status, text = "ok", ""
        try:
            code = self._compile(src, offset, whole)
        except BaseException as exc:  # noqa: BLE001 - SyntaxError, ValueError, MemoryError...
            status, text = "syntax", self._report(exc, only=True)
        else:
            try:
                _exec(code, self.module.__dict__)
            except SystemExit as exc:
                status = "exit"
                if exc.code is not None and not isinstance(exc.code, int):
                    text = f"{exc.code}\n"
                    self._emit(text)
            except BaseException as exc:  # noqa: BLE001 - the program's error is its output
                status, text = "error", self._report(exc, only=False)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001, S110 - the program may have replaced them
                pass
        self.pieces += 1
        return {"status": status, "text": text[-_MAX_REPLY_TEXT:], "line": offset + 1,
                "t0": t0, "t1": _perf()}

    def check(self, src: str) -> dict[str, Any]:
        """Does the whole program compile? Warnings are ignored, never turned into errors."""
        with _catch_warnings():
            _simplefilter("ignore")
            try:
                _compile(src, FILENAME, "exec", 0, dont_inherit=True)
            except BaseException:  # noqa: BLE001
                return {"compiles": False}
        return {"compiles": True}


def _without_worker_frames(te: traceback.TracebackException) -> traceback.TracebackException:
    """Drop the worker's own frames (its ``exec`` call, the audit hook) from every traceback."""
    todo, seen = [te], set()
    while todo:
        t = todo.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list(
            [f for f in t.stack if f.filename != _SELF])
        todo.extend(x for x in (t.__cause__, t.__context__) if x is not None)
        todo.extend(getattr(t, "exceptions", None) or ())
    return te


def _note(exc: BaseException, note: str) -> None:
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


def _read_frame(fd: int) -> dict[str, Any] | None:
    parts, need, body = [], 4, False
    while need:
        chunk = _read(fd, min(need, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        need -= len(chunk)
        if not need and not body:
            need, body, parts = int.from_bytes(b"".join(parts), "big"), True, []
    return dict(_loads(b"".join(parts).decode("utf-8")))


def _write_frame(fd: int, msg: dict[str, Any]) -> None:
    body = _dumps(msg).encode("utf-8")
    data = memoryview(len(body).to_bytes(4, "big") + body)
    while data:
        data = data[_write(fd, data):]


def _serve(cfg: dict[str, Any]) -> None:
    """The worker: set up the sandbox, then serve requests until ``exit`` or end of input."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setpgid(0, 0)                               # its own group: killed as one
    requests, replies = os.dup(0), os.dup(1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)                                  # fds 1 and 2: the capture file
    sys.stdout, sys.stderr = _stream(1), _stream(2)
    sys.argv = ["-c"]
    sys.path.insert(0, "")                         # like ``python -c``: import from the cwd
    _set_limits(cfg)
    _install_guard(bool(cfg.get("allow_subprocess")))
    runner = _Runner(cfg)
    if cfg.get("noproc_bpf"):
        _load_seccomp(bytes.fromhex(cfg["noproc_bpf"]))   # no new process from here on
    _write_frame(replies, {"pid": os.getpid()})
    while True:
        req = _read_frame(requests)
        if req is None or req.get("op") == "exit":
            break
        if req["op"] == "check":
            _write_frame(replies, runner.check(req["src"]))
        else:
            _write_frame(replies, runner.run(req["src"], bool(req.get("whole"))))
    os.killpg(0, signal.SIGKILL)                   # the worker and anything it started


def _libc() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None                                # not Linux: orphans go to init


def _load_seccomp(program: bytes) -> None:
    """Add the host-built seccomp filter (a BPF program) to this process, or exit."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(program, len(program))

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = _Prog(len(program) // 8, ctypes.addressof(buf))
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        os.write(2, b"[sandbox] could not load the seccomp filter\n")
        os._exit(70)


def _children(me: int) -> list[int]:
    """Pids of the processes whose parent is ``me`` (read from /proc)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2:].split()[1]) == me:
                found.append(int(name))
    return found


def _reap(worker: int) -> None:
    """The reaper: wait for the worker; then kill and reap everything it left, and exit.

    It is the worker's parent and a child subreaper, so whatever the program started, even
    orphaned, ends up its child: none is left as an orphan or a zombie (PID 1 in a container
    often reaps nothing). Exits with the worker's status (128 + signal when killed)."""
    me = os.getpid()
    status: list[int] = []

    def end_all(*_: Any) -> None:
        for target in [-worker] + _children(me):   # the worker's group, then any child left
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass

    signal.signal(signal.SIGTERM, end_all)         # the host asks for the end
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    while True:
        try:
            pid, st = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == worker:
            status.append(128 + os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st))
        if status:                                 # the worker is gone: end what is left
            end_all()
    os._exit(status[0] if status else 0)


def main(argv: list[str]) -> None:
    """Fork into the reaper (this process) and the worker (its child)."""
    cfg = json.loads(argv[1])
    if cfg.get("sandbox_root"):                   # the sandbox's private tmpfs
        for sub in ("work", "home", "tmp"):
            os.makedirs(os.path.join(cfg["sandbox_root"], sub), 0o700, exist_ok=True)
        os.chdir(os.path.join(cfg["sandbox_root"], "work"))
        os.environ.pop("PWD", None)                # set by bwrap, not by the host
    libc = _libc()
    if libc is not None:
        libc.prctl(36, 1, 0, 0, 0)                 # PR_SET_CHILD_SUBREAPER
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))   # until the reaper is set up
    reaper = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            if libc is not None:                   # the worker dies with its reaper
                libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != reaper:
                os._exit(1)
            _serve(cfg)
        finally:
            os._exit(1)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    _reap(pid)


if __name__ == "__main__":
    main(sys.argv)
