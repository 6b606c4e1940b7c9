"""The public surface is exactly what is meant: each public module exports these names and no more
(httpx's ``test_exported_members``); every name in ``__all__`` exists."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC = {
    "conveyor_integrations": [
        "AlreadyClaimed", "ClaimError", "ConveyorError", "EarlyAbort", "PartialExecution",
        "Prediction", "RemoteToolError", "RequestCancelled", "ResultDropped", "RunWhenInvoked",
        "Scheduler", "Speculation", "ToolExecutor", "ToolSpec", "ToolTimeout",
        "default_scheduler", "partial_tool", "set_default_scheduler"],
    "conveyor_integrations.adapters": [],
    "conveyor_integrations.adapters.langchain": ["ChatConveyor", "ConveyorCallbackHandler"],
    "conveyor_integrations.adapters.llamaindex": [
        "ConveyorFunctionTool", "ConveyorLLM", "ConveyorToolResultEvent",
        "ConveyorToolStartedEvent", "ConveyorTurnEndEvent"],
    "conveyor_integrations.analyze": [
        "RecordedRun", "RecordedTool", "RecordedTurn", "RunEstimate", "Strategy", "TraceError",
        "estimate_run", "read_traces", "strategies_of_tools"],
    "conveyor_integrations.backends": [
        "Backend", "BackendError", "ChatRequest", "Delta", "OpenAICompatible", "Replay",
        "Transcript", "VLLMEngine", "new_request_id", "split_tokens"],
    "conveyor_integrations.events": [
        "CallDone", "CallEvent", "CallMalformed", "CallStarted", "Event", "FieldDone", "ItemDone",
        "JSONPath", "StreamDone", "Text", "TextChunk"],
    "conveyor_integrations.errors": [
        "AlreadyClaimed", "ClaimError", "ConveyorError", "EarlyAbort", "RemoteToolError",
        "RequestCancelled", "ResultDropped", "RunWhenInvoked", "ToolTimeout"],
    "conveyor_integrations.executors": ["ClusterBusy", "RayExecutor", "RemoteToolError"],
    "conveyor_integrations.observers": [
        "KINDS", "ExecutionEvent", "Observe", "Observer", "add_observer", "open_observers",
        "remove_observer"],
    "conveyor_integrations.otel": ["instrument", "uninstrument"],
    "conveyor_integrations.speculation": [
        "AgentRunStats", "Prediction", "Speculation", "SpeculativeRun"],
    "conveyor_integrations.policy": [
        "ApprovalRequired", "ApprovalSnapshot", "BoundTools", "CompleteCallDispatch",
        "HoldSideEffects", "Policy", "Start", "approval_snapshot", "bound_specs",
        "current_policy", "set_current_policy"],
    "conveyor_integrations.bench": ["main", "parse_args", "run_bench"],
    "conveyor_integrations.parsing": [
        "PARSERS", "DeepSeekV3Parser", "FencedCodeParser", "Glm45Parser", "HarmonyParser",
        "HermesParser", "KimiK2Parser", "Llama3JsonParser", "MistralParser",
        "OpenAIDeltaParser", "ParserBase", "ParserOptions", "PlanParser", "PythonicParser",
        "Qwen3XmlParser", "ToolCallParser", "Unit",
        "get_parser"],
    "conveyor_integrations.tools": [
        "CalculatorError", "HttpOptions", "InvalidArguments", "Limits", "PlanError",
        "PlanExecution", "PlanRunner", "PythonExecution", "SQLExecution", "SQLLimits",
        "SandboxUnavailable", "StepFailed", "ValidateExecution", "arun_python_code",
        "calculator_tool", "fetch_tool", "partial_python", "plan_tool", "python_tool",
        "run_plan_text", "run_python", "run_python_code", "run_sql_script", "search_tool",
        "sql_tool", "validated_tool"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_exported_members(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert getattr(mod, name, None) is not None, f"{module}.{name} is in __all__ but missing"
    tools = importlib.import_module("conveyor_integrations.tools")
    assert sorted(tools._LAZY) == sorted(tools.__all__)


def test_partial_tool_signature() -> None:
    from conveyor_integrations import partial_tool

    params = inspect.signature(partial_tool).parameters
    assert list(params) == ["tool", "start_on", "stream", "unit", "items", "combine",
                            "execution", "side_effects", "timeout", "scheduler", "executor",
                            "read_only", "follow_up"]
    assert params["unit"].default == "line" and params["side_effects"].default is False
