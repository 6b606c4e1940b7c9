"""Hostile code in the Python tool cannot touch the host's files, other calls, the network, or
exhaust the host's processes and disk; native escapes (ctypes, a re-imported
``_posixsubprocess``) start nothing.

Each test checks the effect: the file is not written, the listener gets no connection, the
bytes on disk and the processes stay bounded.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from pathlib import Path

import psutil

from conveyor_integrations.events import CallStarted, TextChunk
from conveyor_integrations.parsing.statements import split_text
from conveyor_integrations.tools import python_sandbox
from conveyor_integrations.tools.python import PythonExecution
from conveyor_integrations.tools.python_limits import set_max_workers, worker_slots
from conveyor_integrations.tools.python_sandbox import Limits, arun_python_code, run_python_code

WRITE = ("import os\nfor path in {paths!r}:\n    try:\n"
         "        with open(path, 'a') as f:\n            f.write('pwned')\n"
         "        print('wrote', path)\n    except OSError as e:\n"
         "        print('refused', path, e.errno)\n")


def test_host_files_are_neither_readable_nor_writable(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host-secret-42")
    target = tmp_path / "planted.txt"
    worker_py = Path(python_sandbox.__file__).with_name("python_worker.py")
    site = Path(os.__file__).parent if sys.prefix == sys.base_prefix else Path(
        sys.prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")
    pth = site / "zz_conveyor_attack.pth"
    before = worker_py.read_bytes()
    paths = [str(target), str(worker_py), str(pth), "/conveyor/python_worker.py",
             str(Path.home() / "planted"), "/etc/planted", "/planted"]
    out = run_python_code(WRITE.format(paths=paths) + f"print(open({str(secret)!r}).read())\n")
    assert not target.exists() and not pth.exists() and not Path("/planted").exists()
    assert worker_py.read_bytes() == before
    assert "host-secret-42" not in out and "wrote" not in out


async def _two_calls() -> tuple[str, str]:
    a = PythonExecution()
    await a.start(CallStarted(0, "a", "run_python"))
    b = PythonExecution()
    await b.start(CallStarted(0, "b", "run_python"))
    code_a = ("open('result.txt', 'w').write('secret-of-a')\n"
              "open('evil_mod.py', 'w').write('print(\"planted\")')\nprint('a done')\n")
    for piece in split_text("statement", code_a):
        await a.feed(TextChunk(0, ("code",), piece))
    while len(a.statements) < 3:
        await asyncio.sleep(0.01)
    code_b = ("import os\nfor root, dirs, files in os.walk('/'):\n"
              "    if root.startswith(('/proc', '/sys', '/usr', '/dev')):\n        continue\n"
              "    for f in files:\n        if f in ('result.txt', 'evil_mod.py'):\n"
              "            print('found', root, f)\n"
              "try:\n    import evil_mod\nexcept ImportError:\n    print('no module')\n")
    for piece in split_text("statement", code_b):
        await b.feed(TextChunk(0, ("code",), piece))
    out_b = await b.finish({"code": code_b})
    out_a = await a.finish({"code": code_a})
    return out_a, out_b


def test_concurrent_calls_cannot_see_each_other() -> None:
    out_a, out_b = asyncio.run(_two_calls())
    assert out_a == "a done\n"
    assert "found" not in out_b and "planted" not in out_b and "no module" in out_b


def test_no_network_not_even_the_hosts_loopback() -> None:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    tcp.settimeout(0.5)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    code = (f"import socket\ntcp, udp = {tcp.getsockname()[1]}, {udp.getsockname()[1]}\n"
            "try:\n    socket.create_connection(('127.0.0.1', tcp), timeout=2)\n"
            "    print('tcp connected')\nexcept OSError as e:\n    print('tcp', e.errno)\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "try:\n    s.sendto(b'hello', ('127.0.0.1', udp)); print('udp sent')\n"
            "except OSError as e:\n    print('udp', e.errno)\n"
            "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
            "    print('internet')\nexcept OSError as e:\n    print('internet', e.errno)\n")
    out = run_python_code(code)
    try:
        try:
            conn, _ = tcp.accept()
            conn.close()
            got_tcp = True
        except TimeoutError:
            got_tcp = False
        try:
            got_udp = udp.recvfrom(100)[0]
        except TimeoutError:
            got_udp = b""
    finally:
        tcp.close()
        udp.close()
    assert not got_tcp and got_udp == b""
    assert "tcp connected" not in out and "internet" in out and "Traceback" not in out


def test_native_escapes_start_no_process() -> None:
    code = ("import ctypes, os, sys\nlibc = ctypes.CDLL(None)\n"
            "print('system', libc.system(b'echo pwned > /sandbox/work/by_system'))\n"
            "sys.modules.pop('_posixsubprocess', None)\nimport _posixsubprocess, subprocess\n"
            "subprocess._fork_exec = _posixsubprocess.fork_exec\n"
            "try:\n    subprocess.run(['sh', '-c', 'echo pwned > by_subprocess'])\n"
            "except Exception as e:\n    print(type(e).__name__)\n"
            "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
            "print('files', sorted(os.listdir('.')), 'processes', len(pids))\n")
    out = run_python_code(code)
    assert "files [] processes 3" in out, out      # bwrap's init, the reaper, the worker


def test_fork_bomb_is_capped() -> None:
    code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nmade = 0\n"
            "for _ in range(400):\n"
            "    pid = libc.fork()\n"
            "    if pid == 0:\n        libc.sleep(30)\n        os._exit(0)\n"
            "    made += pid > 0\n"
            "print('made', made, 'processes', len([p for p in os.listdir('/proc') if p.isdigit()]))\n")
    peak: list[int] = [0]
    stop = threading.Event()
    others = {p.pid for p in psutil.Process().children(recursive=True)}  # e.g. a vLLM engine

    def watch() -> None:
        me = psutil.Process()
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], len([p for p in me.children(recursive=True)
                                            if p.pid not in others]))
            except psutil.Error:
                pass
            stop.wait(0.02)

    t = threading.Thread(target=watch)
    t.start()
    try:
        out = run_python_code(code)
    finally:
        stop.set()
        t.join()
    assert "made 0 processes 3" in out and peak[0] <= 4   # bwrap, init, reaper, worker


def test_disk_writes_are_capped_by_the_sandbox_quota() -> None:
    code = ("import os\ntotal = 0\nfor i in range(8):\n"
            "    for where in ('.', '/tmp'):\n"
            "        try:\n            with open(f'{where}/f{i}', 'wb') as f:\n"
            "                for _ in range(60):\n"
            "                    f.write(b'x' * (1 << 20)); total += 1 << 20\n"
            "        except OSError as e:\n            pass\n"
            "print('written MiB', total >> 20)\n")
    out = run_python_code(code, limits=Limits(disk_mb=128))
    written = int(out.split("written MiB")[1].split()[0])
    assert written <= 128 and written < 480


def test_live_workers_are_capped_per_process() -> None:
    slots = worker_slots()
    size = slots.size
    set_max_workers(3)
    peak: list[int] = [0]

    async def one(i: int) -> str:
        return await arun_python_code(f"import time\ntime.sleep(0.2)\nprint({i})\n")

    async def go() -> list[str]:
        async def watch() -> None:
            while True:
                live = [p for p in psutil.Process().children() if p.name() == "bwrap"]
                peak[0] = max(peak[0], len(live), slots.used)
                await asyncio.sleep(0.02)

        watcher = asyncio.ensure_future(watch())
        try:
            return await asyncio.gather(*(one(i) for i in range(12)))
        finally:
            watcher.cancel()

    try:
        outs = asyncio.run(go())
    finally:
        set_max_workers(size)
    assert outs == [f"{i}\n" for i in range(12)] and 1 <= peak[0] <= 3
