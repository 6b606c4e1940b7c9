"""What every token source gives the adapters: a request in, a stream of deltas out.

A backend's ``stream(request)`` is an async generator of deltas. A delta is either

* a ``str`` of model text (the in-process engine, a replayed text transcript), or
* a ``dict`` shaped like an OpenAI chat-completion chunk's ``delta``
  (``{"content": ..., "tool_calls": [{"index", "id", "function": {"name", "arguments"}}]}``),
  optionally with ``"finish_reason"`` and ``"usage"`` keys on the last one.

Closing the generator early (``aclose()``, or cancelling the task that iterates it) must stop
decoding and free the request on the engine or server. Example::

    >>> import asyncio
    >>> from conveyor_integrations.backends import Replay, ChatRequest
    >>> async def collect():
    ...     return [d async for d in Replay("hi", tokens_per_s=1e6).stream(ChatRequest([]))]
    >>> "".join(asyncio.run(collect()))
    'hi'
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

from ..errors import ConveyorError

__all__ = ["Backend", "BackendError", "ChatRequest", "Delta", "auto_tool_format",
           "new_request_id"]

Delta: TypeAlias = str | dict[str, Any]

_ids = itertools.count()


def new_request_id() -> str:
    """A process-unique request id (``"req-<n>"``)."""
    return f"req-{next(_ids)}"


class BackendError(ConveyorError, RuntimeError):
    """The backend failed: connection refused, stream cut, HTTP error, timeout, engine died."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion request, in OpenAI's shapes."""

    messages: Sequence[Mapping[str, Any]]
    """OpenAI-style messages (``role``, ``content``, ``tool_calls``, ``tool_call_id``)."""
    tools: Sequence[Mapping[str, Any]] = ()
    """OpenAI-style tool schemas: ``{"type": "function", "function": {name, description, parameters}}``."""
    tool_choice: str | Mapping[str, Any] | None = None
    sampling: Mapping[str, Any] = field(default_factory=dict)
    """Sampling parameters passed through to the engine (temperature, max_tokens, seed...)."""
    request_id: str = field(default_factory=new_request_id)


@runtime_checkable
class Backend(Protocol):
    """A token source. ``default_tool_format`` names the parser that reads its stream; a
    backend that can tell better once started (``VLLMEngine``, from its chat template) also has
    ``async detect_tool_format() -> str`` (see :func:`auto_tool_format`)."""

    default_tool_format: str

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream the model's reply to ``request`` as deltas."""
        ...

    async def aclose(self) -> None:
        """Release the engine, client or server connection."""
        ...


async def auto_tool_format(backend: Any) -> str:
    """The format ``tool_format="auto"`` picks for ``backend``: its ``detect_tool_format()``
    where it has one, else its ``default_tool_format``.

    >>> import asyncio
    >>> from conveyor_integrations.backends import Replay
    >>> asyncio.run(auto_tool_format(Replay("hi"))), asyncio.run(auto_tool_format(Replay([{}])))
    ('hermes', 'openai')
    """
    detect = getattr(backend, "detect_tool_format", None)
    if detect is not None:
        return str(await detect())
    return str(getattr(backend, "default_tool_format", "hermes"))
