"""Where a tool's work runs: the :class:`ToolExecutor` protocol.

By default a tool's early work runs in the agent's process: synchronous bodies on the
scheduler's thread pool, async bodies and executions on the loop that drives the model's stream.
An executor moves it elsewhere, for one tool (``partial_tool(..., executor=...)``) or for every
tool with a synchronous body that a scheduler starts (``Scheduler(executor=...)``). Results still
come back to the agent's process and are handed over exactly once, as in-process ones are.
:class:`~conveyor_integrations.executors.RayExecutor` is the one the library ships. Example::

    >>> class Inline:                       # runs bodies right here (what a test might use)
    ...     def check(self, spec): pass
    ...     async def run(self, spec, args): return spec.run(args)
    ...     def execution(self, spec): return None
    >>> isinstance(Inline(), ToolExecutor)
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .spec import PartialExecution, ToolSpec

__all__ = ["ToolExecutor", "remote_execution_of"]


@runtime_checkable
class ToolExecutor(Protocol):
    """Runs tool work away from the loop that drives the model's stream."""

    def check(self, spec: ToolSpec) -> None:
        """Raise a clear error now (decoration or binding time) if ``spec`` cannot run here."""
        ...

    async def run(self, spec: ToolSpec, args: dict[str, Any]) -> Any:
        """Run the tool's body once on ``args`` and return its result (or raise its error)."""
        ...

    def execution(self, spec: ToolSpec) -> PartialExecution | None:
        """A fresh execution of one call that runs elsewhere and is fed the call's pieces in
        order, or None to keep the tool's strategy here (its body then runs through ``run``)."""
        ...


def remote_execution_of(spec: ToolSpec, executor: ToolExecutor | None,
                        complete_only: bool) -> PartialExecution | None:
    """The executor's own execution of one call of ``spec``, for streamed and custom tools
    (statements, lines, plan steps), which keep state between pieces; None otherwise."""
    if executor is None or complete_only or spec.starts_on[0] not in ("stream", "custom"):
        return None
    return executor.execution(spec)
