"""Ready partial-execution tools for the paper's workloads, and worked examples of writing one.

Each tool is a module of its own, imported on demand (nothing here starts processes or
registers tools at import time):

* :mod:`~conveyor_integrations.tools.python` (CodeGen): ``python_tool()``, ``run_python``,
  ``partial_python``, ``PythonExecution``, ``run_python_code``, ``Limits``: each top-level
  statement runs in a sandboxed worker process as soon as it has been decoded.
* :mod:`~conveyor_integrations.tools.search` (Search): ``search_tool()``, ``fetch_tool()``: each
  query or URL is requested as soon as its string is final (httpx, the ``tools`` extra).
* :mod:`~conveyor_integrations.tools.sql` (SQL): ``sql_tool()``: each complete statement runs
  against SQLite (read-only unless ``side_effects=True``) as soon as it is decoded.
* :mod:`~conveyor_integrations.tools.plan` (Planning): ``plan_tool()``, ``PlanRunner``: each
  LLMCompiler-style step runs as soon as its line is complete and its ``$N`` inputs exist.
* :mod:`~conveyor_integrations.tools.validate` (Validation): ``validated_tool()``,
  ``ValidateExecution``: each field is checked as it becomes final; the first invalid one stops
  decoding.
* :mod:`~conveyor_integrations.tools.calculator`: ``calculator_tool()``: the case where there is
  nothing to gain.

Example::

    >>> from conveyor_integrations.tools import python_tool
    >>> callable(python_tool)
    True
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    **{n: "python" for n in ("Limits", "PythonExecution", "arun_python_code", "partial_python",
                             "python_tool", "run_python", "run_python_code")},
    "SandboxUnavailable": "python_isolation",
    **{n: "search" for n in ("search_tool", "fetch_tool", "HttpOptions")},
    **{n: "sql" for n in ("sql_tool", "SQLExecution", "SQLLimits", "run_sql_script")},
    **{n: "calculator" for n in ("calculator_tool", "CalculatorError")},
    **{n: "plan" for n in ("PlanError", "PlanExecution", "PlanRunner", "StepFailed", "plan_tool",
                           "run_plan_text")},
    **{n: "validate" for n in ("InvalidArguments", "ValidateExecution", "validated_tool")},
}
__all__ = ["CalculatorError", "HttpOptions", "InvalidArguments", "Limits", "PlanError",
           "PlanExecution", "PlanRunner", "PythonExecution", "SQLExecution", "SQLLimits",
           "SandboxUnavailable", "StepFailed", "ValidateExecution", "arun_python_code",
           "calculator_tool", "fetch_tool", "partial_python", "plan_tool", "python_tool",
           "run_plan_text", "run_python", "run_python_code", "run_sql_script", "search_tool",
           "sql_tool", "validated_tool"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
