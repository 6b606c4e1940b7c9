"""The public surface named in DESIGN.md is importable, with the documented signatures."""

from __future__ import annotations

import inspect

import pytest

import conveyor_integrations
from conveyor_integrations import EarlyAbort, PartialExecution, partial_tool
from conveyor_integrations.backends import OpenAICompatible, Replay, VLLMEngine


def test_core_names() -> None:
    assert {"partial_tool", "PartialExecution", "EarlyAbort"} <= set(conveyor_integrations.__all__)
    assert issubclass(EarlyAbort, Exception)
    assert hasattr(PartialExecution, "feed")
    params = inspect.signature(partial_tool).parameters
    assert {"start_on", "stream", "unit", "items", "execution", "side_effects",
            "timeout"} <= set(params)


def test_backend_signatures() -> None:
    replay = inspect.signature(Replay).parameters
    assert replay["tokens_per_s"].default == 50.0 and replay["seed"].default == 0
    assert inspect.signature(VLLMEngine).parameters["model"].default is None
    oc = inspect.signature(OpenAICompatible).parameters
    assert list(oc)[:3] == ["base_url", "model", "api_key"] and oc["api_key"].default == "EMPTY"


def test_adapter_names() -> None:
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from conveyor_integrations.adapters.langchain import ChatConveyor, ConveyorCallbackHandler
    from conveyor_integrations.adapters.llamaindex import ConveyorLLM

    assert ChatConveyor.model_fields["tool_format"].default == "auto"     # the design's default
    assert ConveyorLLM.model_fields["tool_format"].default == "auto"
    assert "tools" in inspect.signature(ConveyorCallbackHandler).parameters


def test_core_imports_no_framework() -> None:
    import subprocess
    import sys

    code = ("import sys, conveyor_integrations, conveyor_integrations.backends, "
            "conveyor_integrations.parsing, conveyor_integrations.adapters; "
            "bad = [m for m in ('langchain_core', 'llama_index', 'vllm', 'openai', 'torch') "
            "if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
