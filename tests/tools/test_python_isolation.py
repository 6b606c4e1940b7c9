"""Python tool: no silent downgrade. Without the sandbox the tool refuses to run, naming the fix;
``isolation="process"`` is an explicit opt-out that warns once."""

from __future__ import annotations

import warnings

import pytest

from conveyor_integrations.tools import python_isolation
from conveyor_integrations.tools.python import PythonExecution, python_tool, run_python_code
from conveyor_integrations.tools.python_isolation import SandboxUnavailable


def test_missing_sandbox_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(python_isolation, "sandbox_problem",
                        lambda: "bubblewrap (`bwrap`) is not installed")
    for make in (lambda: python_tool("py_iso"), lambda: PythonExecution(),
                 lambda: run_python_code("print(1)")):
        with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap") as err:
            make()
        assert "isolation='process'" in str(err.value)


def test_process_isolation_warns_once_and_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(python_isolation, "_warned", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_python_code("print(1)", isolation="process") == "1\n"
        PythonExecution(isolation="process")
    assert [str(w.message).startswith("isolation='process'") for w in caught] == [True]


def test_unknown_isolation_is_an_error() -> None:
    with pytest.raises(ValueError, match="isolation must be"):
        PythonExecution(isolation="auto")  # type: ignore[arg-type]


def test_sandbox_is_available_here() -> None:
    assert python_isolation.sandbox_problem() is None
