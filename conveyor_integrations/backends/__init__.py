"""Token sources: replayed transcripts, the in-process vLLM engine, OpenAI-compatible servers.

``VLLMEngine`` and ``OpenAICompatible`` import vLLM and openai only when first used, so the core
installs without them. Example::

    >>> from conveyor_integrations.backends import Replay
    >>> Replay("hello").default_tool_format
    'hermes'
"""

from __future__ import annotations

from typing import Any

from .base import Backend, BackendError, ChatRequest, Delta, new_request_id
from .replay import Replay, Transcript, split_tokens

__all__ = [
    "Backend",
    "BackendError",
    "ChatRequest",
    "Delta",
    "OpenAICompatible",
    "Replay",
    "Transcript",
    "VLLMEngine",
    "new_request_id",
    "split_tokens",
]


def __getattr__(name: str) -> Any:
    if name == "VLLMEngine":
        from .vllm_engine import VLLMEngine

        return VLLMEngine
    if name == "OpenAICompatible":
        from .openai_compatible import OpenAICompatible

        return OpenAICompatible
    raise AttributeError(name)
