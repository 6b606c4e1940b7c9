"""The connection to a Ray cluster that a :class:`~.ray_executor.RayExecutor` and its
``options()`` copies share: joining or starting it once, the in-flight slots, the specs put in
the object store once, the warm actors; and how Ray's failures read as tool errors. Internal.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import RemoteToolError
from .ray_remote import CallActor, run_body, warm_body
from .slots import Slots

if TYPE_CHECKING:
    from ..spec import ToolSpec

__all__ = ["RayCluster", "import_ray", "remote_failure"]

_FIX = "pip install 'conveyor-integrations[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"RayExecutor needs Ray, which is not installed: {_FIX}") from exc
    return ray


def remote_failure(spec: ToolSpec, what: str, exc: BaseException) -> RemoteToolError:
    """Ray's failure of a task or actor, as the tool error the model and the user see."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = lines[-1] if lines else ""            # Ray's own last line says what happened
    return RemoteToolError(f"tool {spec.name!r}: the Ray {what} running it failed "
                           f"({type(exc).__name__}: {detail}); its work is lost and is not "
                           "run again")


class RayCluster:
    """The connection, the in-flight slots and the shipped specs shared by an executor's
    :meth:`RayExecutor.options` copies."""

    def __init__(self, address: str | None, init: Mapping[str, Any], max_in_flight: int) -> None:
        self.address, self.init = address, dict(init)
        self.slots = Slots(max_in_flight)
        self.started_here = False
        """This executor started the local cluster (``shutdown`` stops it)."""
        self._lock = threading.Lock()
        self._specs: dict[int, tuple[ToolSpec, Any]] = {}
        self._remote: dict[str, Any] = {}
        self.idle: dict[tuple[int, int], list[Any]] = {}
        """Warm actors not yet given a call, per (spec, executor)."""
        self.pool_lock = threading.Lock()

    def connect(self) -> Any:
        """Join (or start) the cluster once; return the ``ray`` module."""
        ray = import_ray()
        with self._lock:
            if not ray.is_initialized():
                kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
                kwargs.update(self.init)
                if self.address is None:
                    ray.init(address="local", **kwargs)    # a new cluster of its own
                    self.started_here = True
                else:
                    ray.init(address=self.address, **kwargs)
            if not self._remote:
                self._remote = {"task": ray.remote(max_retries=0)(run_body),
                                "warm": ray.remote(max_retries=0)(warm_body),
                                "actor": ray.remote(max_restarts=0, max_task_retries=0)(
                                    CallActor)}
        return ray

    def remote(self, kind: str) -> Any:
        """The Ray task (``"task"``) or actor class (``"actor"``)."""
        return self._remote[kind]

    def spec_ref(self, spec: ToolSpec) -> Any:
        """``spec`` in the object store, put there once (its executor left behind)."""
        ray = self.connect()
        with self._lock:
            held = self._specs.get(id(spec))
            if held is None or held[0] is not spec:
                held = (spec, ray.put(dataclasses.replace(spec, executor=None)))
                self._specs[id(spec)] = held
        return held[1]

    def nodes(self) -> list[dict[str, float]]:
        """The total resources of each live node."""
        ray = self.connect()
        return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
