"""What runs inside Ray: the task that runs one tool body, and the actor that holds one call.

Both answer with a tagged pair instead of raising, so that the agent's process tells a tool's own
error (``("error", exc)``) and ``EarlyAbort`` (``("abort", reason)``) apart from Ray's failures
(a dead worker, actor or node), which come back as Ray exceptions. Nothing here is retried:
tasks have ``max_retries=0`` and actors ``max_restarts=0``, so a body never runs twice.
Internal to :mod:`.ray_executor`; importing it imports no Ray (the decorators are applied there).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import time
from collections.abc import Awaitable
from typing import Any

from ..errors import EarlyAbort, RunWhenInvoked
from ..policy import ApprovalSnapshot, set_current_policy

__all__ = ["CallActor", "portable", "run_body", "warm_body"]

Tagged = tuple[str, Any]


def portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (to reach the agent's process), else a RuntimeError."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def run_body(spec: Any, args: dict[str, Any]) -> Tagged:
    """One run of a tool's body (a Ray task); an async body runs on a loop of its own here."""
    try:
        value = asyncio.run(spec.run(args)) if spec.is_async else spec.run(args)
        return ("ok", value)
    except BaseException as exc:  # noqa: BLE001 - the tool's error is its result
        return ("error", portable(exc))


class _LocalRunner:
    """The runner a built-in strategy gets inside the actor: the body, in the actor's threads."""

    __slots__ = ("_is_async", "_run", "spec")

    def __init__(self, spec: Any) -> None:
        self.spec, self._run, self._is_async = spec, spec.run, spec.is_async

    async def __call__(self, args: dict[str, Any]) -> Any:
        if self._is_async:
            return await self._run(args)
        return await asyncio.to_thread(self._run, args)


async def _tagged(step: Awaitable[Any]) -> Tagged:
    try:
        return ("ok", await step)
    except EarlyAbort as exc:
        return ("abort", exc.reason)
    except RunWhenInvoked as exc:
        return ("run_when_invoked", str(exc))
    except BaseException as exc:  # noqa: BLE001 - the tool's error is its result
        return ("error", portable(exc))


def warm_body(spec: Any, hold_s: float) -> bool:
    """A task that only loads ``spec`` (and so imports the tool's modules) in a worker; it
    holds the worker ``hold_s`` s so that the warm-up tasks land on different workers."""
    time.sleep(hold_s)
    return spec is not None


class CallActor:
    """One call's execution (a Ray actor). Made with the tool's spec, so a warm actor has
    imported the tool's modules before its call comes; ``start`` builds the execution.

    ``policy`` is the request's (its approvals, :func:`~..policy.approval_snapshot`): each
    method runs with it as the current policy, as the execution would in the agent's process.
    An actor serves one call and is then killed: nothing of one call reaches the next.
    """

    def __init__(self, spec: Any) -> None:
        self._spec = spec
        self._policy: ApprovalSnapshot | None = None
        self._impl: Any = None

    async def start(self, policy: ApprovalSnapshot | None, call: Any) -> Tagged:
        """Build and start the execution; the answer also carries this actor's process id."""
        self._policy = policy
        set_current_policy(policy)
        try:
            self._impl = self._spec.make_execution(_LocalRunner(self._spec))
        except BaseException as exc:  # noqa: BLE001 - the tool's error is its result
            return ("error", portable(exc))
        tag, value = await _tagged(self._impl.start(call))
        return (tag, os.getpid() if tag == "ok" else value)

    async def feed(self, event: Any) -> Tagged:
        set_current_policy(self._policy)
        return await _tagged(self._impl.feed(event))

    async def finish(self, args: dict[str, Any]) -> Tagged:
        set_current_policy(self._policy)
        return await _tagged(self._impl.finish(args))

    async def cancel(self) -> Tagged:
        if self._impl is None:
            return ("ok", None)
        set_current_policy(self._policy)
        return await _tagged(self._impl.cancel())
