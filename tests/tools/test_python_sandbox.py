"""Python tool sandbox: limits stop runaway programs with a clear error, the host is unaffected,
the worker sees none of the host's environment, and no worker process outlives its request.

Process creation is tested without any risk of a fork bomb on the host: the programs fork a
bounded number of times and every child exits at once, so even if the guard failed they could
make at most 200 short-lived processes.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Iterator

import psutil
import pytest

from conveyor_integrations import EarlyAbort
from conveyor_integrations.events import CallStarted, TextChunk
from conveyor_integrations.tools.python import Limits, PythonExecution, run_python_code
from conveyor_integrations.tools.python_sandbox import Worker

LIMITS = (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC,
          resource.RLIMIT_NOFILE)


def tree(worker: Worker) -> list[int]:
    """Host pids of the worker's whole process tree (bwrap, the sandbox's init, the reaper, the
    worker and what it started)."""
    top = psutil.Process(worker.reaper_pid)
    return [top.pid] + [p.pid for p in top.children(recursive=True)]


def alive(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except psutil.Error:
            pass
    return found


def workers() -> list[psutil.Process]:
    """Worker processes (and their reapers) below this test process."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if any("python_worker.py" in part for part in p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


def wait_gone(pids: list[int], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while any(psutil.pid_exists(p) for p in pids):
        assert time.monotonic() < end, f"processes left: {pids}"
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def host_unaffected() -> Iterator[None]:
    """Each test leaves the host's limits, cwd and environment as they were, and no worker."""
    def state() -> tuple[object, ...]:
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        return [resource.getrlimit(r) for r in LIMITS], os.getcwd(), hash(frozenset(env.items()))

    before = state()
    yield
    assert state() == before
    assert workers() == []
    assert run_python_code("print('later call ok')") == "later call ok\n"


def test_allocating_10_gb_is_a_memory_error() -> None:
    out = run_python_code("print('start')\nx = bytearray(10 * 1024 ** 3)\nprint('never')\n")
    assert out.startswith("start\nTraceback (most recent call last):")
    assert "MemoryError" in out and "[sandbox] the memory limit is 2048 MiB" in out
    assert "never" not in out


def test_memory_limit_with_numpy() -> None:
    pytest.importorskip("numpy")
    out = run_python_code("import numpy as np\na = np.ones(10 * 1024 ** 3 // 8)\n",
                          limits=Limits(memory_mb=1024))
    assert "MemoryError" in out and "memory limit is 1024 MiB" in out


@pytest.mark.parametrize("code", [
    "import os\nfor _ in range(200):\n    if os.fork() == 0:\n        os._exit(0)\n",
    "import subprocess\nsubprocess.run(['true'])\n",
    "import os\nos.system('true')\n",
    "import multiprocessing as mp\np = mp.get_context('spawn').Process(target=print)\np.start()\n",
])
def test_process_creation_is_refused(code: str) -> None:
    out = run_python_code(code)
    assert "[sandbox] process creation is not allowed in this sandbox" in out, out


def test_signals_to_other_processes_and_raising_limits_are_refused() -> None:
    out = run_python_code("import os\nos.kill(os.getppid(), 0)\n")     # signal 0: harmless
    assert "signalling process" in out and "not allowed" in out
    out = run_python_code("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (-1, -1))\n")
    assert "changing resource limits is not allowed" in out


def test_huge_file_is_stopped_by_the_file_size_limit() -> None:
    code = "with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * 65536)\n"
    out = run_python_code(code, limits=Limits(file_size_mb=1))
    assert "OSError: [Errno 27] File too large" in out
    assert "[sandbox] the file size limit is 1 MiB" in out


def test_endless_loop_is_stopped_by_the_wall_clock_limit() -> None:
    t0 = time.monotonic()
    out = run_python_code("print('start')\nwhile True:\n    pass\n", limits=Limits(wall_s=1))
    assert out == "start\n[sandbox] stopped: the program ran past its wall-clock limit of 1 s\n"
    assert time.monotonic() - t0 < 10


def test_endless_loop_is_stopped_by_the_cpu_limit() -> None:
    out = run_python_code("while True:\n    pass\n", limits=Limits(cpu_s=1, wall_s=30))
    assert out == "[sandbox] stopped: the program used more than its CPU-time limit of 1 s\n"


def test_worker_sees_none_of_the_hosts_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_FAKE_SECRET", "hunter2")
    code = "import os\nprint(sorted(os.environ.items()))\n"
    out = run_python_code(code, limits=Limits(env={"EXTRA": "yes"}))
    assert "hunter2" not in out and "CONVEYOR_FAKE_SECRET" not in out
    env = dict(eval(out))
    assert env["EXTRA"] == "yes" and set(env) <= {
        "PATH", "HOME", "TMPDIR", "LANG", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
        "MPLBACKEND", "MPLCONFIGDIR", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS", "EXTRA"}


def test_cwd_is_a_private_folder_removed_afterwards() -> None:
    out = run_python_code("import os\nopen('f.txt', 'w').write('x')\nprint(os.getcwd())\n")
    assert out == "/sandbox/work\n"               # the sandbox's own tmpfs, not a host path
    assert not os.path.exists("/sandbox")


async def started(code: list[str], limits: Limits | None = None,
                  abort_on_error: bool = False) -> PythonExecution:
    ex = PythonExecution(limits=limits, abort_on_error=abort_on_error)
    await ex.start(CallStarted(0, "c1", "run_python"))
    for piece in code:
        await ex.feed(TextChunk(0, ("code",), piece))
    return ex


async def test_cancel_kills_and_reaps_the_worker_mid_statement() -> None:
    ex = await started(["print('a')\n", "import time\n", "time.sleep(30)\n"])
    worker = ex._worker
    assert worker is not None and worker.pid is not None
    while len(ex.statements) < 2:
        await asyncio.sleep(0.01)
    pids = tree(worker)
    assert len(pids) >= 4 and alive(pids) == pids   # bwrap, init, reaper, worker
    await ex.cancel()
    wait_gone(pids)
    assert not os.path.exists(worker.root)


async def test_no_worker_survives_finish_error_or_abort() -> None:
    ex = await started(["x = 1\n"])
    assert ex._worker is not None
    pids = tree(ex._worker)
    assert await ex.finish({"code": "x = 1\n"}) == ""
    ex2 = await started(["1/0\n"], abort_on_error=True)
    assert ex2._worker is not None
    pids += tree(ex2._worker)
    while not ex2.statements:
        await asyncio.sleep(0.01)
    with pytest.raises(EarlyAbort, match="ZeroDivisionError"):
        await ex2.feed(TextChunk(0, ("code",), "print(2)\n"))
    await ex2.cancel()                     # what the scheduler does after an EarlyAbort
    wait_gone(pids)


async def test_allowed_subprocesses_are_killed_and_reaped_too() -> None:
    code = ["import subprocess, os\n",
            "procs = [subprocess.Popen(['sleep', '30']) for _ in range(3)]\n",
            ("if os.fork() == 0:\n    p = subprocess.Popen(['sleep', '30'], start_new_session=True)"
             "\n    os._exit(0)\n"),
            "print(len(procs))\n", "import time\n", "time.sleep(30)\n"]
    ex = await started(code, limits=Limits(allow_subprocess=True))
    while len(ex.statements) < 5:
        await asyncio.sleep(0.01)
    assert ex.statements[3].output == "3\n"
    worker = ex._worker
    assert worker is not None
    await asyncio.sleep(0.2)
    pids = tree(worker)
    sleeps = [p for p in alive(pids) if psutil.Process(p).name() == "sleep"]
    assert len(sleeps) == 4                  # 3 children and one orphan in its own session
    await ex.cancel()
    wait_gone(pids)                          # none left, not even a zombie


async def test_a_limit_kill_mid_program_keeps_the_output_and_reaps() -> None:
    ex = await started(["print('before')\n", "while True:\n    pass\n"],
                       limits=Limits(wall_s=0.5))
    out = await ex.finish({"code": "print('before')\nwhile True:\n    pass\n"})
    assert out == "before\n[sandbox] stopped: the program ran past its wall-clock limit of 0.5 s\n"
