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
parser, keeps each argument's earliness, and avoids the streaming bugs of some of vLLM's
(llama3_json and mistral, see BENCHMARKS.md); a request that forces a call
(``tool_choice="required"`` or a named tool) needs the server's parser and is refused.

With ``tool_parsing="server"``, calls the server leaves in the message text (a server without
a tool parser, or one that did not recognise a call) are read there too, in ``tool_format`` or
the model family's format when its name tells one and its calls open with a marker
(:attr:`text_tool_format`; else the text is only text: a JSON answer is not a llama3_json
call). The choice is logged when the backend is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import weakref
from collections.abc import AsyncIterator
from typing import Any

from .base import BackendError, ChatRequest, Delta

__all__ = ["OpenAICompatible"]

_log = logging.getLogger("conveyor_integrations")
_MARKED = frozenset({"hermes", "qwen3_xml", "mistral", "deepseek_v3", "glm45", "kimi_k2",
                     "harmony"})
"""Formats whose calls open with a marker, so that text without one stays text (not so
``llama3_json`` and ``pythonic``: a JSON or list answer would read as a call)."""

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
        from ..parsing import PARSERS
        from ..parsing.detect import UnknownToolFormat, format_from_model_name

        if tool_parsing not in ("server", "client"):
            raise ValueError(f"tool_parsing must be 'server' or 'client', not {tool_parsing!r}")
        raw = tool_format is None or (tool_format in PARSERS and tool_format != "openai")
        if not raw and not (tool_format == "openai" and tool_parsing == "server"):
            raise ValueError(f"tool_format {tool_format!r} cannot read raw model text; use one "
                             "of " + ", ".join(sorted(set(PARSERS) - {"openai"})))
        self.text_tool_format: str | None = None
        """The format of calls read from the message text: all of them (``client``), or those
        the server leaves there (``server``; None: the text is only text)."""
        if tool_parsing == "client":
            self.default_tool_format = self.text_tool_format = (
                tool_format or format_from_model_name(model))
        elif tool_format is None:
            with contextlib.suppress(UnknownToolFormat):
                fmt = format_from_model_name(model)
                self.text_tool_format = fmt if fmt in _MARKED else None
        elif tool_format != "openai":
            self.text_tool_format = tool_format
        self.tool_parsing = tool_parsing
        if tool_parsing == "client":
            where = f"the message text, as {self.text_tool_format}"
        else:
            where = "the server's tool_calls deltas" + (
                "" if self.text_tool_format is None
                else f", and calls left in the message text as {self.text_tool_format}")
        _log.info("OpenAICompatible(%r): tool calls from %s", model, where)
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
