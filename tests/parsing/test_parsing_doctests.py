"""The examples in the parsing package's docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["__init__", "assembler", "base", "fenced_code", "hermes", "json_scanner",
           "json_tokens", "llama3_json", "mistral", "openai_deltas", "plan", "statements"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module("conveyor_integrations.parsing"
                                     + ("" if name == "__init__" else "." + name))
    result = doctest.testmod(module)
    assert result.failed == 0
    assert result.attempted > 0 or name == "json_tokens"
