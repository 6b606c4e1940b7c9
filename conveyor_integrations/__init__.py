"""conveyor-integrations: tool partial execution for LangChain, LlamaIndex and vLLM.

Tools start on the part of their call that the model has already decoded, so an agent's tools
finish about ``max(decode, tool)`` after the message starts instead of ``decode + tool``::

    >>> from conveyor_integrations import partial_tool
    >>> @partial_tool(start_on=["query"])
    ... def web_search(query: str) -> str:
    ...     return "..."

``ARCHITECTURE.md`` draws the layers; the framework adapters live in
``conveyor_integrations.adapters`` and the token sources in ``conveyor_integrations.backends``.
"""

from .errors import (
    AlreadyClaimed,
    ClaimError,
    ConveyorError,
    EarlyAbort,
    RemoteToolError,
    RequestCancelled,
    ResultDropped,
    RunWhenInvoked,
    ToolTimeout,
)
from .partial import partial_tool
from .scheduler import Scheduler, default_scheduler, set_default_scheduler
from .spec import PartialExecution, ToolExecutor, ToolSpec
from .speculation import Prediction, Speculation

__all__ = [
    "AlreadyClaimed",
    "ClaimError",
    "ConveyorError",
    "EarlyAbort",
    "PartialExecution",
    "Prediction",
    "RemoteToolError",
    "RequestCancelled",
    "ResultDropped",
    "RunWhenInvoked",
    "Scheduler",
    "Speculation",
    "ToolExecutor",
    "ToolSpec",
    "ToolTimeout",
    "default_scheduler",
    "partial_tool",
    "set_default_scheduler",
]

__version__ = "0.1.0"
