"""The security boundary of the Python tool: a bubblewrap sandbox with a seccomp filter.

Each worker (:mod:`~conveyor_integrations.tools.python_worker`) runs inside ``bwrap`` with:

* its own user, pid, network, mount, ipc, uts and cgroup namespaces (``--unshare-all
  --unshare-user``), running as uid/gid 65534 with no capabilities (``--cap-drop ALL``) and no
  further user namespaces (``--disable-userns``): it sees no host process (its own ``/proc``),
  has no network but its own loopback, and cannot signal, trace or read the host;
* a root made of read-only binds of what the interpreter needs and nothing else: ``/usr`` (and
  the ``/lib``, ``/bin`` links), the interpreter prefix (``sys.base_prefix``), the venv
  (``sys.prefix``), the site-packages on ``sys.path``, the worker script (at
  ``/conveyor/python_worker.py``), a few files of ``/etc``; the root is remounted read-only
  (``--remount-ro /``). The library's own source, ``/home``, the rest of ``/root`` and ``/work``
  are not visible; nothing of the host is writable;
* a private tmpfs at ``/sandbox`` (``work``, ``home``, ``tmp``; ``/tmp`` links there) capped
  at ``Limits.disk_mb`` with bwrap's ``--size`` (bwrap >= 0.7): the disk quota of the worker,
  gone with its mount namespace; a fresh ``/dev`` and ``/proc``;
* ``--die-with-parent`` (the sandbox dies with the host), ``--new-session`` (no terminal
  injection), ``no_new_privs`` (set by bwrap);
* a seccomp filter (loaded by bwrap before it runs the worker, ``--seccomp FD``) refusing with
  ``EPERM`` what namespaces do not cover: ptrace, process_vm_readv/writev, the pidfd calls,
  mount and the new mount API, pivot_root, chroot, bpf, the key calls, perf_event_open, kexec,
  module loading, userfaultfd, unshare, setns, io_uring, clone with namespace flags, and more
  (``_DENIED``); ``clone3`` gets ``ENOSYS`` (its flags cannot be inspected; libc falls back to
  ``clone``). When subprocesses are not allowed the worker adds a second filter, after its
  imports and before the first statement, that refuses every new process (``fork``, ``vfork``,
  ``clone`` without ``CLONE_THREAD``, ``execve``): ctypes or a re-imported
  ``_posixsubprocess`` get ``EPERM`` from the kernel, not just from the audit hook.

Why these: bubblewrap is small, packaged everywhere (Debian ``bubblewrap``), needs no daemon
or root and sets up every namespace in one exec (~+20 ms); Docker/gVisor would need a daemon and
cost 100s of ms per call. The filters are built with libseccomp through ``pyseccomp`` (ctypes
over ``libseccomp.so.2``, so it works with any interpreter and venv; Debian's
``python3-seccomp`` serves the system Python only), which handles the architecture check and
the x32 ABI for us; the exported BPF programs are made once per process and cached.

Where this boundary cannot be had (not Linux, no ``bwrap``, no ``pyseccomp``, user namespaces
refused), ``isolation="sandbox"`` (the default) raises :class:`SandboxUnavailable` naming the
fix; ``isolation="process"`` runs the worker as a plain subprocess with rlimits and an audit
hook (the former behaviour), after one warning. See ``SECURITY.md``.
"""

from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys
import tempfile
import warnings
from typing import Literal

__all__ = ["SANDBOX_WORKER", "Isolation", "SandboxUnavailable", "bwrap_command",
           "check_isolation", "sandbox_problem", "seccomp_programs"]

Isolation = Literal["sandbox", "process"]
SANDBOX_WORKER = "/conveyor/python_worker.py"
"""Where the worker script is bound inside the sandbox."""
SANDBOX_UID = 65534
_ETC = ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives", "/etc/ssl/certs")
_DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_send_signal",
    "pidfd_getfd", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "bpf", "keyctl", "add_key",
    "request_key", "perf_event_open", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "userfaultfd", "unshare", "setns", "swapon", "swapoff",
    "reboot", "syslog", "acct", "quotactl", "iopl", "ioperm", "name_to_handle_at",
    "open_by_handle_at", "kcmp", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "lookup_dcookie", "settimeofday", "clock_settime", "adjtimex", "clock_adjtime",
    "vhangup", "uselib", "nfsservctl", "fanotify_init", "migrate_pages", "move_pages",
    "mbind", "set_mempolicy", "landlock_create_ruleset")
_CLONE_NAMESPACES = 0x7E020000      # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
_CLONE_THREAD = 0x00010000
_FIX = ("install bubblewrap (`apt-get install bubblewrap`) and the `tools` extra "
        "(`pip install 'conveyor-integrations[tools]'`, which brings pyseccomp over "
        "libseccomp2), and allow unprivileged user namespaces (sysctl "
        "kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0, on Ubuntu "
        "kernel.apparmor_restrict_unprivileged_userns=0); or opt out of the sandbox with "
        "isolation='process' (no security boundary: trusted code only)")
_warned: list[bool] = []


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be set up here; the message names the problem and the fix."""


def _build(allow_subprocess: bool, noproc: bool) -> bytes:
    import errno

    import pyseccomp as sc  # type: ignore[import-untyped]

    flt = sc.SyscallFilter(sc.ALLOW)
    if noproc:
        flt.add_rule(sc.ERRNO(errno.EPERM), "clone",
                     sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
        for name in ("fork", "vfork", "execve", "execveat"):
            flt.add_rule(sc.ERRNO(errno.EPERM), name)
    else:
        for name in _DENIED:
            try:
                flt.add_rule(sc.ERRNO(errno.EPERM), name)
            except (RuntimeError, ValueError, OSError):
                pass                            # a call this kernel/arch does not have
        flt.add_rule(sc.ERRNO(errno.EPERM), "clone",
                     sc.Arg(0, sc.MASKED_EQ, _CLONE_NAMESPACES, _CLONE_NAMESPACES))
        flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as f:
        flt.export_bpf(f)
        f.seek(0)
        return f.read()


@functools.cache
def seccomp_programs() -> tuple[bytes, bytes]:
    """The BPF programs: (for bwrap ``--seccomp``, refusing new processes), made once."""
    return _build(False, False), _build(False, True)


def _binds() -> list[str]:
    """Read-only binds: the runtime and its packages, nothing else of the host."""
    paths: list[str] = []
    for path in (sys.base_prefix, sys.prefix, *site.getsitepackages(),
                 *(p for p in sys.path if "-packages" in p)):
        real = os.path.realpath(path)
        if os.path.isdir(real) and not real.startswith("/usr/") and real != "/usr":
            paths.append(real)
    paths = sorted(set(paths))
    out = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        top = "/" + name
        if os.path.islink(top):
            out += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            out += ["--ro-bind", top, top]
    for path in paths:
        if not any(path.startswith(p + "/") for p in paths if p != path):
            out += ["--ro-bind", path, path]
    for etc in _ETC:
        if os.path.exists(etc):
            out += ["--ro-bind", etc, etc]
    return out


@functools.cache
def _static_args() -> tuple[str, ...]:
    return ("--unshare-all", "--unshare-user", "--disable-userns", "--hostname", "sandbox",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL",
            "--die-with-parent", "--new-session", *_binds(), "--proc", "/proc", "--dev", "/dev")


def bwrap_command(worker_script: str, disk_mb: int, seccomp_fd: int,
                  info_fd: int | None) -> list[str]:
    """The ``bwrap`` arguments that run ``worker_script`` (the interpreter's command follows).

    ``info_fd``: where bwrap writes ``{"child-pid": ...}`` (the host pid of the sandbox's
    init)."""
    bwrap = shutil.which("bwrap") or "bwrap"
    info = [] if info_fd is None else ["--info-fd", str(info_fd)]
    # a runtime bound from under /tmp (a checkout in /tmp) makes /tmp a directory of binds:
    # then /tmp stays read-only and TMPDIR points into the private tmpfs instead of a symlink
    under_tmp = any(a.startswith("/tmp/") for a in _static_args())
    tmp = (["--setenv", "TMPDIR", "/sandbox/tmp"] if under_tmp
           else ["--symlink", "/sandbox/tmp", "/tmp"])
    return [bwrap, *_static_args(), "--ro-bind", worker_script, SANDBOX_WORKER,
            "--perms", "0777", "--size", str(max(1, disk_mb) << 20), "--tmpfs", "/sandbox",
            *tmp, "--remount-ro", "/", "--chdir", "/sandbox",
            "--seccomp", str(seccomp_fd), *info, "--"]


@functools.cache
def sandbox_problem() -> str | None:
    """Why the sandbox cannot run here (``None``: it can). Probes ``bwrap`` once."""
    if not sys.platform.startswith("linux"):
        return f"the Python sandbox needs Linux (this is {sys.platform})"
    if shutil.which("bwrap") is None:
        return "bubblewrap (`bwrap`) is not installed"
    try:
        bpf, _ = seccomp_programs()
    except ImportError:
        return "the seccomp binding `pyseccomp` is not installed"
    except (OSError, RuntimeError, AttributeError) as exc:
        return f"libseccomp (libseccomp2) is unusable: {exc}"
    read, write = os.pipe()
    try:
        os.write(write, bpf)
        os.close(write)
        cmd = [*bwrap_command(__file__, 1, read, None), sys.executable, "-S", "-c", "pass"]
        done = subprocess.run(cmd, pass_fds=(read,), capture_output=True, timeout=30,
                              check=False, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap failed to start: {exc}"
    finally:
        os.close(read)
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip()[-500:]
        return f"bubblewrap cannot create the sandbox (user namespaces refused?): {err}"
    return None


def check_isolation(isolation: str) -> None:
    """Raise :class:`SandboxUnavailable` (``"sandbox"``) or warn once (``"process"``)."""
    if isolation == "sandbox":
        problem = sandbox_problem()
        if problem is not None:
            raise SandboxUnavailable(f"cannot sandbox generated Python: {problem}. Fix: {_FIX}")
    elif isolation == "process":
        if not _warned:
            _warned.append(True)
            warnings.warn("isolation='process': generated Python runs as a plain subprocess "
                          "of this user, with resource limits but no security boundary "
                          "(it can read and write this user's files and reach the network)",
                          RuntimeWarning, stacklevel=3)
    else:
        raise ValueError(f"isolation must be 'sandbox' or 'process', not {isolation!r}")
