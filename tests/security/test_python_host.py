"""Hostile code in the Python tool cannot reach the host: its environment, its memory, its
processes, its lifetime; a forged reply cannot make the host buffer a huge frame.

Each test checks the effect (the secret is not in the output, the host's bytes are unchanged,
the host process is alive, no process is left), not just that an error was raised. Attacks that
could kill the host run in a helper host process, never in pytest itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import psutil

from conveyor_integrations.tools.python_sandbox import Limits, Worker, run_python_code

LIBC = "import ctypes, os, signal\nlibc = ctypes.CDLL(None, use_errno=True)\n"


def tree(pid: int) -> list[int]:
    top = psutil.Process(pid)
    return [pid] + [p.pid for p in top.children(recursive=True)]


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """The pids still running (not zombies) after ``timeout`` seconds at most."""
    end = time.monotonic() + timeout
    while True:
        left = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
            except psutil.Error:
                pass
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


def test_host_environment_is_not_readable_through_proc() -> None:
    secret = "env-" + uuid.uuid4().hex
    os.environ["CONVEYOR_HOST_SECRET"] = secret
    try:
        code = (f"import os\nhost = {os.getpid()}\nfound = []\n"
                "for pid in [str(host), 'self', *os.listdir('/proc')]:\n"
                "    try:\n"
                "        found.append(open(f'/proc/{pid}/environ', 'rb').read().decode())\n"
                "    except OSError as e:\n"
                "        found.append(repr(e))\n"
                "print(found)\nprint(os.environ)\n")
        out = run_python_code(code)
    finally:
        del os.environ["CONVEYOR_HOST_SECRET"]
    assert secret not in out and "CONVEYOR_HOST_SECRET" not in out
    assert "Traceback" not in out          # the attack ran; it just found nothing


def test_host_memory_cannot_be_read_or_written() -> None:
    secret = bytearray(("mem-" + uuid.uuid4().hex).encode())
    before = bytes(secret)
    addr = id(secret)
    code = LIBC + (
        f"host, addr, needle = {os.getpid()}, {addr}, {before!r}\nhits = []\n"
        "for pid in [str(host), *os.listdir('/proc')]:\n"
        "    if pid in (str(os.getpid()), 'self', 'thread-self'):\n"
        "        continue                      # its own memory holds the needle\n"
        "    try:\n"
        "        with open(f'/proc/{pid}/maps') as m, open(f'/proc/{pid}/mem', 'r+b', 0) as mem:\n"
        "            for line in m:\n"
        "                lo, hi = (int(x, 16) for x in line.split()[0].split('-'))\n"
        "                try:\n"
        "                    mem.seek(lo); data = mem.read(min(hi - lo, 1 << 24))\n"
        "                except (OSError, OverflowError, ValueError):\n"
        "                    continue\n"
        "                if needle in data:\n"
        "                    hits.append(pid)\n"
        "    except OSError as e:\n"
        "        pass\n"
        "try:\n"
        "    with open(f'/proc/{host}/mem', 'r+b', 0) as mem:\n"
        "        mem.seek(addr); mem.write(b'X' * 4096)\n"
        "except OSError as e:\n"
        "    print('write refused', e.errno)\n"
        "class IOV(ctypes.Structure):\n"
        "    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n"
        "buf = ctypes.create_string_buffer(4096)\n"
        "local, remote = IOV(ctypes.addressof(buf), 4096), IOV(addr, 4096)\n"
        "n = libc.process_vm_readv(host, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)\n"
        "if n > 0 and needle in buf.raw:\n"
        "    hits.append('vm_readv')\n"
        "print('hits', hits)\n")
    out = run_python_code(code)
    assert bytes(secret) == before                 # not overwritten
    assert "hits []" in out, out                   # found nowhere but in its own memory


HOST = """
import asyncio, sys
from conveyor_integrations.tools.python_sandbox import run_python_code
code = sys.stdin.read().replace("HOSTPID", str(__import__("os").getpid()))
print(repr(run_python_code(code)), flush=True)
print("host alive", flush=True)
"""


def run_in_helper_host(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HOST], input=code, capture_output=True,
                          text=True, timeout=60, check=False)


def test_host_cannot_be_killed_by_signals_or_pidfd() -> None:
    code = LIBC + (
        "host = HOSTPID\n"
        "for attempt in (lambda: signal.pidfd_send_signal(os.pidfd_open(host), 9),\n"
        "                lambda: os.kill(host, 9), lambda: os.kill(-1, 9)):\n"
        "    try:\n"
        "        attempt()\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__)\n"
        "print('kill', libc.kill(host, 9), libc.syscall(424, libc.syscall(434, host, 0), 9, 0, 0))\n"
        "libc.kill(-1, 9)\n"
        "print('still here')\n")
    done = run_in_helper_host(code)
    assert done.returncode == 0 and "host alive" in done.stdout, done.stderr


def test_killing_the_reaper_ends_the_whole_tree() -> None:
    async def go() -> tuple[str, list[int]]:
        worker = await Worker.spawn(Limits(allow_subprocess=True))
        try:
            r = await worker.run("import subprocess\nps = [subprocess.Popen(['sleep', '60'], "
                                 "start_new_session=True) for _ in range(2)]\n",
                                 whole=False, timeout=30)
            assert r.status == "ok", worker.output()
            pids = tree(worker.reaper_pid)
            r = await worker.run(LIBC + "libc.kill(os.getppid(), 9)\nimport time\ntime.sleep(60)\n",
                                 whole=False, timeout=30)
            return r.status, pids
        finally:
            await worker.kill()

    status, pids = asyncio.run(go())
    assert status == "killed" and len(pids) >= 6      # bwrap, init, reaper, worker, 2 sleeps
    assert wait_gone(pids) == []


HOST_DIES = """
import asyncio, psutil
from conveyor_integrations.tools.python_sandbox import Limits, Worker
async def main():
    w = await Worker.spawn(Limits(allow_subprocess=True))
    await w.run("import subprocess\\np = subprocess.Popen(['sleep', '60'])\\n", whole=False,
                timeout=30)
    task = asyncio.ensure_future(w.run("import time\\ntime.sleep(60)\\n", whole=False, timeout=90))
    await asyncio.sleep(0.3)
    print(" ".join(str(p.pid) for p in psutil.Process().children(recursive=True)), flush=True)
    await task
asyncio.run(main())
"""


def test_no_process_survives_the_host() -> None:
    host = subprocess.Popen([sys.executable, "-c", HOST_DIES], stdout=subprocess.PIPE, text=True)
    assert host.stdout is not None
    pids = [int(p) for p in host.stdout.readline().split()]
    assert len(pids) >= 5                    # bwrap, init, reaper, worker, sleep
    host.send_signal(signal.SIGKILL)
    host.wait()
    assert wait_gone(pids) == []


def test_forged_huge_reply_frame_is_refused_without_buffering() -> None:
    proc = psutil.Process()
    before = proc.memory_info().rss
    code = ("import os, fcntl, stat\n"
            "for fd in range(3, 64):\n"
            "    try:\n"
            "        if stat.S_ISFIFO(os.fstat(fd).st_mode) and "
            "fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:\n"
            "            os.write(fd, (0x60000000).to_bytes(4, 'big'))\n"
            "            chunk = b'[' * (1 << 20)\n"
            "            for _ in range(1536):\n"
            "                os.write(fd, chunk)\n"
            "    except OSError:\n"
            "        pass\n")
    out = run_python_code(code)
    grown = proc.memory_info().rss - before
    assert "broke the protocol" in out and "the cap is" in out
    assert grown < 64 << 20                   # not 1.5 GiB


def test_garbage_reply_is_a_clear_error() -> None:
    code = ("import os, fcntl, stat\n"
            "for fd in range(3, 64):\n"
            "    try:\n"
            "        if stat.S_ISFIFO(os.fstat(fd).st_mode) and "
            "fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:\n"
            "            body = b'{\"status\": 1, \"text\": []}'\n"
            "            os.write(fd, len(body).to_bytes(4, 'big') + body)\n"
            "    except OSError:\n"
            "        pass\n"
            "import time\ntime.sleep(30)\n")
    out = run_python_code(code, limits=Limits(wall_s=20))
    assert "broke the protocol" in out
