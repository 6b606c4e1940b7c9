"""Every error the library raises, in one place.

::

    ConveyorError
     ├── EarlyAbort          a partial execution asks to stop decoding; its message goes to the model
     ├── ClaimError          asking the scheduler for an early result went wrong
     │    ├── AlreadyClaimed     the result of that call was handed out before (exactly once)
     │    └── ResultDropped      the execution was cancelled or expired before anyone claimed it
     ├── RunWhenInvoked      an execution gives no early result: the tool runs when invoked
     ├── ToolTimeout         a tool ran past its ``timeout``
     ├── RequestCancelled    the request's stream failed or was cancelled; its executions were cancelled
     └── BackendError        (backends.base) the token source failed

Example::

    >>> from conveyor_integrations.errors import EarlyAbort, ConveyorError
    >>> issubclass(EarlyAbort, ConveyorError)
    True
"""

from __future__ import annotations

__all__ = [
    "AlreadyClaimed",
    "ClaimError",
    "ConveyorError",
    "EarlyAbort",
    "RemoteToolError",
    "RequestCancelled",
    "ResultDropped",
    "RunWhenInvoked",
    "ToolTimeout",
]


class ConveyorError(Exception):
    """Base class of the library's errors."""


class EarlyAbort(ConveyorError):
    """Raise from ``PartialExecution.start``/``feed`` to stop decoding at once.

    The message is handed to the model as the tool's result, so it can correct itself sooner::

        raise EarlyAbort("field 'age' must be >= 0, got -3")
    """

    @property
    def reason(self) -> str:
        """The message given to the model."""
        return str(self.args[0]) if self.args else "aborted"


class ClaimError(ConveyorError):
    """The early result of a call could not be handed out."""


class AlreadyClaimed(ClaimError):
    """The result of this call was already handed out; each result is handed out once."""


class ResultDropped(ClaimError):
    """The early execution was cancelled, or expired unclaimed, so it has no result."""


class RunWhenInvoked(ConveyorError):
    """Raise from ``PartialExecution.finish`` to give no early result: the claim then tells the
    framework to run the tool itself, when it invokes it (e.g. a plan with a step that must wait
    for approval)."""


class ToolTimeout(ConveyorError, TimeoutError):
    """A tool ran past the ``timeout`` given to ``partial_tool``."""


class RequestCancelled(ConveyorError):
    """The request was cancelled or its stream failed; its early executions were cancelled."""


class RemoteToolError(ConveyorError):
    """The process that ran a tool's work elsewhere (a Ray task or actor, its node) died or
    could not take it; the work was lost and is never run again. The message names the tool."""
