"""Executors that run tools' early work away from the agent's process.

:class:`RayExecutor` runs it on a Ray cluster (the ``ray`` extra); any object with the
:class:`~conveyor_integrations.executor.ToolExecutor` methods can take its place. Importing this
package imports no Ray: that happens when a ``RayExecutor`` is made.
"""

from ..errors import RemoteToolError
from .ray_executor import RayExecutor
from .slots import ClusterBusy

__all__ = ["ClusterBusy", "RayExecutor", "RemoteToolError"]
