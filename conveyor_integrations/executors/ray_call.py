"""One call of a streamed or custom tool, held by a Ray actor: :class:`RemoteExecution`.

The agent's process keeps this proxy; the tool's real execution (its ``PartialExecution``, e.g.
the Python tool's sandboxed worker) lives in the actor, under the request's approvals (a
:class:`~conveyor_integrations.policy.ApprovalSnapshot`). ``start`` places the actor (waiting for
a slot and for Ray to find room, both bounded by the executor's ``queue_timeout``); each
``feed`` is awaited before the next is sent, so the actor sees the pieces in decoding order and
an ``EarlyAbort`` it raises stops decoding at that piece. ``finish`` returns the actor's result
and kills it; ``cancel`` asks the execution to stop, then kills the actor (its process, and the
sandbox in it, end; its resources free). Internal to :mod:`.ray_executor`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import EarlyAbort, RunWhenInvoked
from ..events import CallStarted, FieldDone, ItemDone, TextChunk
from ..policy import approval_snapshot, current_policy
from .ray_cluster import RayCluster, remote_failure
from .slots import ClusterBusy

if TYPE_CHECKING:
    from ..spec import ToolSpec

__all__ = ["Placer", "RemoteExecution"]

_GRACE_S = 5.0      # how long the actor's own cancel() may take before the actor is killed


class Placer(Protocol):
    """What a :class:`RemoteExecution` needs of its executor (a ``RayExecutor``)."""

    cluster: RayCluster
    queue_timeout: float

    def ready(self, spec: ToolSpec) -> Any: ...

    def take_actor(self, spec: ToolSpec, shipped: Any) -> Any: ...

    def ray_options(self) -> dict[str, Any]: ...


class RemoteExecution:
    """Proxy of one call's execution in a Ray actor (implements ``PartialExecution``)."""

    def __init__(self, executor: Placer, spec: ToolSpec) -> None:
        self._executor, self._spec = executor, spec
        self._ray: Any = None
        self._actor: Any = None
        self._held = False
        self.pid: int | None = None
        """The actor's process id, once it started."""

    async def start(self, call: CallStarted) -> None:
        ex, spec = self._executor, self._spec
        self._ray = ex.ready(spec)
        shipped = ex.cluster.spec_ref(spec)
        await ex.cluster.slots.acquire(ex.queue_timeout, f"tool {spec.name!r}")
        self._held = True
        self._actor = ex.take_actor(spec, shipped)
        policy = approval_snapshot(current_policy())      # what the request holds back
        try:
            async with asyncio.timeout(ex.queue_timeout):
                self.pid = await self._call("start", policy, call)
        except TimeoutError:
            await self._kill()
            raise ClusterBusy(f"tool {spec.name!r}: Ray found no room for its actor "
                              f"({ex.ray_options()}) within {ex.queue_timeout:g} s") from None

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        await self._call("feed", event)

    async def finish(self, args: dict[str, Any]) -> Any:
        try:
            return await self._call("finish", args)
        finally:
            await self._kill()

    async def cancel(self) -> None:
        actor = self._actor
        if actor is not None:
            try:
                await asyncio.wait_for(actor.cancel.remote(), _GRACE_S)
            except Exception:  # noqa: BLE001, S110 - it is killed next whatever happened
                pass
        await self._kill()

    async def _call(self, method: str, *args: Any) -> Any:
        actor, ray = self._actor, self._ray
        if actor is None:
            raise RuntimeError(f"tool {self._spec.name!r}: {method}() before start()")
        try:
            tag, value = await getattr(actor, method).remote(*args)
        except ray.exceptions.RayError as exc:
            await self._kill()
            raise remote_failure(self._spec, "actor", exc) from None
        if tag == "abort":
            raise EarlyAbort(value)
        if tag == "run_when_invoked":
            raise RunWhenInvoked(value)
        if tag == "error":
            raise value
        return value

    async def _kill(self) -> None:
        actor, self._actor = self._actor, None
        if actor is not None:
            self._ray.kill(actor, no_restart=True)
        if self._held:
            self._held = False
            self._executor.cluster.slots.release()
