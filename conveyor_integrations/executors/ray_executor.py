"""Run tools' early work on a Ray cluster: :class:`RayExecutor`.

Whole-call work (``start_on``, ``items``, complete calls) goes out as Ray tasks with the tool's
resource needs (``num_cpus``, ``memory``, custom resources); streamed and custom tools
(statements, lines, plan steps) get one Ray actor per call, fed the call's pieces in order, so
the Python tool's sandboxed worker runs inside that actor on its node. Nothing is retried
(``max_retries=0``, ``max_restarts=0``): a worker, actor or node that dies mid-call becomes a
:class:`~conveyor_integrations.errors.RemoteToolError`, never a hang and never a second run.
Cancellation and early abort kill the task or actor, which frees its resources and ends the
sandbox in it. At most ``max_in_flight`` calls per process are out at once; more wait for a
slot, up to ``queue_timeout`` s (then :class:`~.slots.ClusterBusy`), and Ray queues what it
cannot place until resources free. Results come back to the agent's process and are handed over
exactly once there, as in-process ones are.

Written on Ray's own task and actor API (no Ray library does partial execution); the cluster is
the user's: ``address=None`` starts a local one on first use (``init`` says its size),
``"auto"`` joins the one ``ray start`` made on this machine, ``"host:port"`` any other, and a
process that already called ``ray.init`` keeps its connection.
Example (nothing connects until a call runs)::

    >>> executor = RayExecutor(num_cpus=1)
    >>> heavy = executor.options(num_cpus=2, memory=2 * 2**30)
    >>> heavy.num_cpus, heavy.memory, heavy.cluster is executor.cluster
    (2, 2147483648, True)
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .ray_call import RemoteExecution
from .ray_cluster import RayCluster, import_ray, remote_failure
from .slots import ClusterBusy

if TYPE_CHECKING:
    from ..spec import PartialExecution, ToolSpec

__all__ = ["RayExecutor"]

class RayExecutor:
    """Runs tools' early work on a Ray cluster (see the module docstring).

    ``num_cpus``, ``memory`` (bytes) and ``resources`` are each call's needs; :meth:`options`
    gives a copy with other needs on the same cluster (``partial_tool(..., executor=heavy)``).
    ``init`` goes to ``ray.init`` (e.g. ``{"num_cpus": 8}`` for a local cluster).
    """

    def __init__(self, address: str | None = None, *, num_cpus: float = 1,
                 memory: int | None = None, resources: Mapping[str, float] | None = None,
                 max_in_flight: int = 256, queue_timeout: float = 120.0,
                 warm_actors: int = 0, init: Mapping[str, Any] | None = None,
                 _cluster: RayCluster | None = None) -> None:
        import_ray()
        if num_cpus < 0 or (memory is not None and memory <= 0) or queue_timeout <= 0:
            raise ValueError("RayExecutor: num_cpus must be >= 0, memory and queue_timeout > 0")
        self.num_cpus, self.memory = num_cpus, memory
        self.resources = dict(resources or {})
        self.queue_timeout = queue_timeout
        self.warm_actors = warm_actors
        """Actors kept started, per streamed tool, so that a call does not wait for one."""
        self.cluster = _cluster or RayCluster(address, init or {}, max_in_flight)
        self._placeable: bool | None = None

    def options(self, *, num_cpus: float | None = None, memory: int | None = None,
                resources: Mapping[str, float] | None = None,
                warm_actors: int | None = None) -> RayExecutor:
        """The same cluster and slots, with other per-call resource needs."""
        return RayExecutor(num_cpus=self.num_cpus if num_cpus is None else num_cpus,
                           memory=self.memory if memory is None else memory,
                           resources=self.resources if resources is None else resources,
                           queue_timeout=self.queue_timeout, _cluster=self.cluster,
                           warm_actors=self.warm_actors if warm_actors is None else warm_actors)

    def connect(self) -> None:
        """Join or start the cluster now (otherwise the first call does, and waits for it)."""
        self.cluster.connect()

    def warm(self, *tools: Any, tasks: int | None = None) -> None:
        """Load ``tools`` in the cluster now: for a streamed or custom tool, start its
        ``warm_actors`` actors; for the others, ``tasks`` tasks at once (default: as many as
        the cluster's CPUs hold) import the tool's modules in that many workers. Otherwise the
        first calls pay for it (a second or two)."""
        from ..spec import spec_of

        ray = self.cluster.connect()
        waits = []
        for tool in tools:
            spec = spec_of(tool)
            if spec is None:
                raise TypeError(f"warm(): {tool!r} is not a tool decorated with partial_tool")
            shipped = self.cluster.spec_ref(spec)
            if spec.starts_on[0] in ("stream", "custom"):
                with self.cluster.pool_lock:
                    pool = self.cluster.idle.setdefault((id(spec), id(self)), [])
                    while len(pool) < self.warm_actors:
                        pool.append(self._new_actor(shipped))
                    waits += [a.__ray_ready__.remote() for a in pool]
            else:
                if tasks is None:
                    cpus = sum(n.get("CPU", 0.0) for n in self.cluster.nodes())
                    tasks = max(1, int(cpus // self.num_cpus) if self.num_cpus else 1)
                task = self.cluster.remote("warm").options(**self.ray_options())
                waits += [task.remote(shipped, 0.5) for _ in range(tasks)]
        try:
            ray.get(waits, timeout=self.queue_timeout)
        except ray.exceptions.GetTimeoutError:
            raise ClusterBusy(f"warm(): the cluster could not place the warm actors and tasks "
                              f"({self.ray_options()} each) within {self.queue_timeout:g} s; "
                              "lower warm_actors or add nodes") from None

    def _new_actor(self, shipped: Any) -> Any:
        return self.cluster.remote("actor").options(**self.ray_options()).remote(shipped)

    def take_actor(self, spec: ToolSpec, shipped: Any) -> Any:
        """An actor for one call of ``spec``: a warm one if there is (and one made to take its
        place), else a new one."""
        with self.cluster.pool_lock:
            pool = self.cluster.idle.get((id(spec), id(self)))
            if pool:
                actor = pool.pop(0)
                pool.append(self._new_actor(shipped))
                return actor
            if self.warm_actors:
                self.cluster.idle[(id(spec), id(self))] = [
                    self._new_actor(shipped) for _ in range(self.warm_actors)]
        return self._new_actor(shipped)

    def close(self) -> None:
        """Kill this executor's warm actors (they hold their resources while idle)."""
        ray = import_ray()
        with self.cluster.pool_lock:
            pools = [k for k in self.cluster.idle if k[1] == id(self)]
            actors = [a for k in pools for a in self.cluster.idle.pop(k)]
        if ray.is_initialized():
            for actor in actors:
                ray.kill(actor, no_restart=True)

    def shutdown(self) -> None:
        """Kill the warm actors, disconnect, and stop the local cluster if this executor
        started it."""
        ray = import_ray()
        if ray.is_initialized():
            for pool in self.cluster.idle.values():
                for actor in pool:
                    ray.kill(actor, no_restart=True)
            ray.shutdown()
        self.cluster.idle.clear()
        self.cluster.started_here = False

    def ray_options(self) -> dict[str, Any]:
        """The resource options of each task and actor."""
        out: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.memory is not None:
            out["memory"] = self.memory
        if self.resources:
            out["resources"] = dict(self.resources)
        return out

    def check(self, spec: ToolSpec) -> None:
        """Raise TypeError now if ``spec`` (its body, its execution) cannot be sent to Ray."""
        from ray import cloudpickle

        try:
            cloudpickle.dumps(dataclasses.replace(spec, executor=None))  # type: ignore[no-untyped-call]
        except Exception as exc:  # noqa: BLE001 - any pickling failure is the same misuse
            raise TypeError(f"tool {spec.name!r} cannot run on Ray: its body or execution "
                            f"cannot be pickled ({type(exc).__name__}: {exc}); keep what it "
                            "holds picklable (no locks, open files or clients made outside "
                            "the body)") from None

    def ready(self, spec: ToolSpec) -> Any:
        """Connect, check once that some node can hold a call, and return ``ray``."""
        ray = self.cluster.connect()
        if self._placeable is None:
            need = {"CPU": float(self.num_cpus), **self.resources}
            if self.memory is not None:
                need["memory"] = float(self.memory)
            nodes = self.cluster.nodes()
            self._placeable = any(all(n.get(k, 0.0) >= v for k, v in need.items() if v)
                                  for n in nodes)
            if not self._placeable:
                raise ValueError(f"tool {spec.name!r} needs {need} per call on Ray, and no node "
                                 f"of the cluster has that much (nodes: {nodes}); lower its "
                                 "needs with RayExecutor.options() or add a larger node")
        elif not self._placeable:
            raise ValueError(f"tool {spec.name!r}: no node of the Ray cluster can hold a call")
        return ray

    async def run(self, spec: ToolSpec, args: dict[str, Any]) -> Any:
        """Run the tool's body once as a Ray task; its error is raised here as it was there."""
        ray = self.ready(spec)
        shipped = self.cluster.spec_ref(spec)
        slots = self.cluster.slots
        await slots.acquire(self.queue_timeout, f"tool {spec.name!r}")
        try:
            ref = self.cluster.remote("task").options(**self.ray_options()).remote(shipped, args)
            try:
                tag, value = await ref
            except asyncio.CancelledError:
                ray.cancel(ref, force=True)       # kills the worker: resources free at once
                raise
            except ray.exceptions.RayError as exc:
                raise remote_failure(spec, "task", exc) from None
        finally:
            slots.release()
        if tag == "error":
            raise value
        return value

    def execution(self, spec: ToolSpec) -> PartialExecution:
        """One Ray actor for one call of a streamed or custom tool."""
        return RemoteExecution(self, spec)
