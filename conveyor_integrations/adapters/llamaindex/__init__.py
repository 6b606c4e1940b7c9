"""LlamaIndex integration (extra ``llamaindex``): a function-calling LLM and tool wrapping.

* :class:`ConveyorLLM`, a ``FunctionCallingLLM`` over any backend of ours, for ``FunctionAgent``,
  ``AgentWorkflow`` and every other LlamaIndex component that takes an LLM;
* ``partial_tool(tool)`` on a ``FunctionTool`` (see :mod:`.tools`);
* :class:`ConveyorTurnEndEvent`, the instrumentation event with each turn's per-call timings;
  :class:`ConveyorToolStartedEvent` and :class:`ConveyorToolResultEvent`, when an early tool
  starts and when its result is ready (see :mod:`.instrumentation`).

Example::

    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.tools import FunctionTool
    from conveyor_integrations import partial_tool
    from conveyor_integrations.adapters.llamaindex import ConveyorLLM
    from conveyor_integrations.backends import VLLMEngine

    search = partial_tool(FunctionTool.from_defaults(fn=web_search), start_on=["query"])
    agent = FunctionAgent(tools=[search], llm=ConveyorLLM(backend=VLLMEngine()))
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("conveyor_integrations.adapters.llamaindex needs the 'llamaindex' extra: "
                      "pip install 'conveyor-integrations[llamaindex]'") from exc

from .convert import ConveyorTurnEndEvent
from .instrumentation import ConveyorToolResultEvent, ConveyorToolStartedEvent
from .llm import ConveyorLLM
from .tools import ConveyorFunctionTool

__all__ = ["ConveyorFunctionTool", "ConveyorLLM", "ConveyorToolResultEvent",
           "ConveyorToolStartedEvent", "ConveyorTurnEndEvent"]
