"""Ready partial-execution tools for the paper's workloads, and worked examples of writing one.

Each tool is a module of its own, imported on demand (nothing here starts processes or
registers tools at import time):

* :mod:`~conveyor_integrations.tools.python` (CodeGen): ``python_tool()``, ``run_python``,
  ``partial_python``, ``PythonExecution``, ``run_python_code``, ``Limits``: each top-level
  statement runs in a sandboxed worker process as soon as it has been decoded.

Example::

    >>> from conveyor_integrations.tools import python_tool
    >>> callable(python_tool)
    True
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Limits", "PythonExecution", "arun_python_code", "partial_python", "python_tool",
           "run_python", "run_python_code"]

_LAZY = {name: "python" for name in __all__}   # other tools: add "name": "module" here


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
