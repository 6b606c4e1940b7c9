"""LangChain's own conformance suite for chat models (the ``langchain-tests`` package).

Every test of ``ChatModelUnitTests`` runs, and the structured-output tests of
``ChatModelIntegrationTests`` (each method, over a Replay of JSON: at the end). The unit suite
itself skips two, for these reasons:
``test_init_from_env`` (ChatConveyor reads no environment variables: there is no API key, the
backend is an object you pass) and ``test_serdes`` (not serialisable: the backend is a live
engine, client or replay, not configuration).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_tests")
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import Replay


class TestChatConveyorUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatConveyor]:
        return ChatConveyor

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"backend": Replay("Hello!", tokens_per_s=None, cycle=True), "model": "replay"}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True


# -- the integration suite's structured-output tests, over a Replay --------------------------------
# ``ChatModelIntegrationTests`` needs a model that answers; a Replay of one JSON joke answers
# every structured-output test of it (the rest of that suite asks for tool calls, images...:
# tests/integration/test_langchain_standard_vllm.py runs it whole on the real engine). The class
# is not collected (no ``Test`` prefix); the tests below call its structured-output tests.

_JOKE = '{"setup": "Why did the cat sit on the laptop?", "punchline": "To watch the mouse."}'
_METHODS = ["function_calling", "json_mode", "json_schema"]


class _StructuredOverReplay(ChatModelIntegrationTests):
    def __init__(self, method: str) -> None:
        self.method = method

    @property
    def chat_model_class(self) -> type[ChatConveyor]:
        return ChatConveyor

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"backend": Replay(_JOKE, tokens_per_s=None, cycle=True), "model": "replay"}

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": self.method}

    @property
    def supports_json_mode(self) -> bool:
        return True

    def make_model(self) -> ChatConveyor:
        return ChatConveyor(**self.chat_model_params)


@pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
@pytest.mark.parametrize("method", _METHODS)
def test_suite_structured_output(sched: Any, method: str, schema_type: str) -> None:
    suite = _StructuredOverReplay(method)
    suite.test_structured_output(suite.make_model(), schema_type)  # type: ignore[arg-type]


@pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
@pytest.mark.parametrize("method", _METHODS)
async def test_suite_structured_output_async(sched: Any, method: str, schema_type: str) -> None:
    suite = _StructuredOverReplay(method)
    await suite.test_structured_output_async(suite.make_model(), schema_type)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", _METHODS)
def test_suite_structured_output_pydantic_v1_and_optional(sched: Any, method: str) -> None:
    suite = _StructuredOverReplay(method)
    suite.test_structured_output_pydantic_2_v1(suite.make_model())
    suite.test_structured_output_optional_param(suite.make_model())


def test_suite_json_mode(sched: Any) -> None:
    suite = _StructuredOverReplay("json_mode")
    suite.test_json_mode(suite.make_model())
