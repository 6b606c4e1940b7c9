"""Any OpenAI-compatible chat server (``vllm serve``, llama.cpp, hosted APIs) as a token source.

Streams ``chat.completions`` with ``stream=True`` and yields each chunk's delta as a plain dict
(``{"content": ...}`` and/or ``{"tool_calls": [{"index", "id", "type", "function": {"name",
"arguments"}}]}``), then ``{"finish_reason": ..., "usage": {...}}``. Closing the generator
closes the HTTP stream, which makes vLLM abort the request. Failures (connection refused, a
stream cut mid-way, HTTP errors, timeouts) raise :class:`BackendError` with the cause chained.
Example::

    >>> import asyncio
    >>> from conveyor_integrations.backends import ChatRequest, OpenAICompatible
    >>> async def main():
    ...     backend = OpenAICompatible("http://127.0.0.1:8000/v1", model="smollm2")
    ...     try:
    ...         req = ChatRequest([{"role": "user", "content": "Hi"}], sampling={"max_tokens": 8})
    ...         return [d async for d in backend.stream(req)]
    ...     finally:
    ...         await backend.aclose()
    >>> asyncio.run(main())[-1]["finish_reason"]           # doctest: +SKIP
    'length'

Parameters the ``openai`` client does not name (vLLM's ``top_k``, ``ignore_eos``,
``structured_outputs``...) are sent in ``extra_body``.

Where the tool calls are parsed: ``tool_parsing="server"`` (the default) reads the server's
``tool_calls`` deltas (format ``openai``; ``vllm serve --enable-auto-tool-choice
--tool-call-parser NAME``). ``tool_parsing="client"`` sends the tools with
``tool_choice="none"``, so the chat template still shows them to the model but the server
parses nothing, and the model's raw text is parsed here in ``tool_format`` (default: chosen
from the model's name, see :func:`~conveyor_integrations.parsing.detect.format_from_model_name`;
an unknown name is an error when the backend is made). It works with a server that has no tool
parser, and avoids the streaming bugs of some of vLLM's (llama3_json and mistral, see
BENCHMARKS.md); a request that forces a call (``tool_choice="required"`` or a named tool) needs
the server's parser and is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import weakref
from collections.abc import AsyncIterator
from typing import Any

from .base import BackendError, ChatRequest, Delta

__all__ = ["OpenAICompatible"]

_CALL_KEYS = ("index", "id", "type", "function")
_OWN_KEYS = frozenset({"messages", "model", "stream", "stream_options", "tools", "tool_choice"})


class OpenAICompatible:
    """A :class:`~conveyor_integrations.backends.base.Backend` over ``openai.AsyncOpenAI``.

    ``client_args`` go to ``openai.AsyncOpenAI`` (``timeout``, ``max_retries``, ``http_client``...).
    One client is made per event loop that uses the backend (httpx connections belong to a loop).
    """

    default_tool_format: str = "openai"

    def __init__(
        self, base_url: str, model: str, api_key: str = "EMPTY", *, tool_parsing: str = "server",
        tool_format: str | None = None, **client_args: Any
    ) -> None:
        if tool_parsing not in ("server", "client"):
            raise ValueError(f"tool_parsing must be 'server' or 'client', not {tool_parsing!r}")
        if tool_parsing == "server" and tool_format not in (None, "openai"):
            raise ValueError(f"tool_format={tool_format!r} reads raw model text: it needs "
                             "tool_parsing='client' (the server's parser sends tool_calls "
                             "deltas, read as 'openai')")
        if tool_parsing == "client":
            from ..parsing import PARSERS
            from ..parsing.detect import format_from_model_name

            fmt = tool_format or format_from_model_name(model)
            if fmt not in PARSERS or fmt == "openai":
                raise ValueError(f"tool_format {fmt!r} cannot read raw model text; use one of "
                                 + ", ".join(sorted(set(PARSERS) - {"openai"})))
            self.default_tool_format = fmt
        self.tool_parsing = tool_parsing
        try:
            import openai
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "OpenAICompatible needs openai: pip install 'conveyor-integrations[openai]'"
            ) from e
        self._openai = openai
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.client_args = client_args
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._named: frozenset[str] | None = None

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self.api_key, **self.client_args
            )
            self._clients[loop] = client
        return client

    def _request_kwargs(self, client: Any, request: ChatRequest) -> dict[str, Any]:
        if self._named is None:
            self._named = frozenset(inspect.signature(client.chat.completions.create).parameters)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            kwargs["tools"] = [dict(t) for t in request.tools]
            if self.tool_parsing == "client":
                if request.tool_choice not in (None, "auto", "none"):
                    raise BackendError(
                        f"tool_choice={request.tool_choice!r} forces a call, which the server "
                        "makes with its own tool parser: use tool_parsing='server' for it")
                kwargs["tool_choice"] = "none"    # shown by the template, parsed here
            elif request.tool_choice is not None:
                kwargs["tool_choice"] = request.tool_choice
        extra: dict[str, Any] = {}
        for key, value in request.sampling.items():
            if key in _OWN_KEYS:  # set from the request and the backend, not from sampling
                continue
            if key == "extra_body":
                extra.update(value)
            elif key in self._named:
                kwargs[key] = value
            else:  # vLLM sampling extensions: top_k, ignore_eos, structured_outputs, ...
                extra[key] = value
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def json_sampling(self, function: dict[str, Any] | None, strict: bool | None) -> dict[str, Any]:
        """The ``response_format`` that holds the answer to ``function["parameters"]`` (an
        OpenAI function; ``strict`` passed on), or to any JSON object when it is None."""
        if function is None:
            return {"response_format": {"type": "json_object"}}
        spec: dict[str, Any] = {"name": re.sub(r"[^a-zA-Z0-9_-]", "_", function["name"])[:64],
                                "schema": function["parameters"]}
        if function.get("description"):
            spec["description"] = function["description"]
        if strict is not None:
            spec["strict"] = strict
        return {"response_format": {"type": "json_schema", "json_schema": spec}}

    def _error(self, e: BaseException, where: str) -> BackendError:
        o = self._openai
        if isinstance(e, o.APITimeoutError):
            msg = f"request to {self.base_url} timed out {where}"
        elif isinstance(e, o.APIConnectionError):
            cause = e.__cause__ or e
            msg = f"connection to {self.base_url} failed {where}: {type(cause).__name__}: {cause}"
        elif isinstance(e, o.APIStatusError):
            msg = f"HTTP {e.status_code} from {self.base_url} {where}: {e.message}"
        else:
            msg = f"{type(e).__name__} from {self.base_url} {where}: {e}"
        return BackendError(msg)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream the reply as delta dicts, then ``{"finish_reason", "usage"}``."""
        client = self._client()
        kwargs = self._request_kwargs(client, request)
        try:
            response = await client.chat.completions.create(**kwargs)
        except Exception as e:
            raise self._error(e, "(opening the stream)") from e
        finish: str | None = None
        usage: dict[str, Any] | None = None
        try:
            try:
                async for chunk in response:
                    if chunk.usage is not None:
                        usage = chunk.usage.model_dump(exclude_none=True)
                    for choice in chunk.choices[:1]:
                        delta = _delta_dict(choice.delta)
                        if delta:
                            yield delta
                        finish = choice.finish_reason or finish
            except Exception as e:
                raise self._error(e, "(stream cut mid-way)") from e
            if finish is None:
                raise BackendError(f"the stream from {self.base_url} ended without a finish_reason")
            final: dict[str, Any] = {"finish_reason": finish}
            if usage is not None:
                final["usage"] = usage
            yield final
        finally:
            with contextlib.suppress(
                Exception
            ):  # frees the request on the server when closed early
                await response.close()

    async def aclose(self) -> None:
        """Close this loop's client; clients of loops that have closed are dropped."""
        loop = asyncio.get_running_loop()
        clients, self._clients = dict(self._clients), weakref.WeakKeyDictionary()
        for owner, client in clients.items():
            if owner is loop:
                await client.close()


def _delta_dict(delta: Any) -> dict[str, Any]:
    """Only the keys the parsers read, without None values."""
    if delta is None:
        return {}
    out: dict[str, Any] = {}
    if delta.content:
        out["content"] = delta.content
    if delta.tool_calls:
        out["tool_calls"] = [
            {k: v for k, v in tc.model_dump(exclude_none=True).items() if k in _CALL_KEYS}
            for tc in delta.tool_calls
        ]
    return out
