"""conveyor-integrations: tool partial execution for LangChain, LlamaIndex and vLLM.

Tools start on the part of their call that the model has already decoded, so an agent's tools
finish about ``max(decode, tool)`` after the message starts instead of ``decode + tool``::

    >>> from conveyor_integrations import partial_tool
    >>> @partial_tool(start_on=["query"])
    ... def web_search(query: str) -> str:
    ...     return "..."

See ``DESIGN.md`` for the architecture; the framework adapters live in
``conveyor_integrations.adapters`` and the token sources in ``conveyor_integrations.backends``.
"""

from .errors import (
                     AlreadyClaimed,
                     ClaimError,
                     ConveyorError,
                     EarlyAbort,
                     RequestCancelled,
                     ResultDropped,
                     ToolTimeout,
)
from .partial import PartialExecution, ToolSpec, partial_tool
from .scheduler import Scheduler, default_scheduler, set_default_scheduler
from .session import RequestSession
from .timings import CallTiming
from .turn import TurnResult, run_turn, stream_turn

__all__ = [
    "AlreadyClaimed",
    "CallTiming",
    "ClaimError",
    "ConveyorError",
    "EarlyAbort",
    "PartialExecution",
    "RequestCancelled",
    "RequestSession",
    "ResultDropped",
    "Scheduler",
    "ToolSpec",
    "ToolTimeout",
    "TurnResult",
    "default_scheduler",
    "partial_tool",
    "run_turn",
    "set_default_scheduler",
    "stream_turn",
]

__version__ = "0.1.0"
