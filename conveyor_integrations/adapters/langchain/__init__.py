"""LangChain integration (extra ``langchain``): a chat model, a callback handler, tool wrapping.

* :class:`ChatConveyor`, a drop-in ``BaseChatModel`` over any backend of ours;
* :class:`ConveyorCallbackHandler`, for a LangChain chat model you already have;
* ``partial_tool(tool)`` on any ``BaseTool`` (see :mod:`.tools`).

Example::

    from langchain.agents import create_agent
    from conveyor_integrations.adapters.langchain import ChatConveyor
    from conveyor_integrations.backends import VLLMEngine

    agent = create_agent(ChatConveyor(backend=VLLMEngine()), tools=[web_search])
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("conveyor_integrations.adapters.langchain needs the 'langchain' extra: "
                      "pip install 'conveyor-integrations[langchain]'") from exc

from .callback import ConveyorCallbackHandler
from .chat import ChatConveyor

__all__ = ["ChatConveyor", "ConveyorCallbackHandler"]
