"""Every module's docstring examples run and hold (the README's test command runs them)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import conveyor_integrations

MODULES = sorted(["conveyor_integrations"] + [
    m.name for m in pkgutil.walk_packages(conveyor_integrations.__path__, "conveyor_integrations.")
    if not m.name.endswith("python_worker")])   # the worker is a script, run in the sandbox


def test_every_module_is_listed() -> None:
    assert "conveyor_integrations.scheduler" in MODULES
    assert "conveyor_integrations.adapters.langchain.chat" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
