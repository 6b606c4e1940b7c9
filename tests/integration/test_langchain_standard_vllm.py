"""LangChain's ``ChatModelIntegrationTests`` against ChatConveyor on the real in-process vLLM."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_tests")
from langchain_tests.integration_tests import ChatModelIntegrationTests

from conveyor_integrations.adapters.langchain import ChatConveyor

pytestmark = pytest.mark.vllm


class TestChatConveyorOnVLLM(ChatModelIntegrationTests):
    engine: Any = None

    @pytest.fixture(autouse=True)
    def _engine(self, vllm_engine: Any) -> None:
        type(self).engine = vllm_engine

    @property
    def chat_model_class(self) -> type[ChatConveyor]:
        return ChatConveyor

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"backend": type(self).engine, "model": "smollm2", "temperature": 0.0,
                "max_tokens": 160, "seed": 0}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    # ----------------------------------------------------------------------------------------
    # Not run (xfail, run=False), with the reason; langchain-tests accepts overrides only so. Every other test of the suite runs against the real engine.
    # The suite's own skips: model_override_value (one model per engine), JSON mode, PDF, audio,
    # image and Anthropic-style inputs (SmolLM2-135M is a text model), VCR (no recorded HTTP:
    # the engine is in-process).
    _SMALL_MODEL = ("SmolLM2-135M does not finish the forced JSON object within the token "
                    "budget: it keeps writing inside a string field (finish_reason='length'), so "
                    "the call is malformed. The adapter path is covered by the unit suite and by "
                    "tests/integration/test_vllm_partial.py with short forced calls.")

    @pytest.mark.xfail(reason=_SMALL_MODEL, run=False)
    def test_structured_output(self, *args: Any, **kwargs: Any) -> None: ...

    @pytest.mark.xfail(reason=_SMALL_MODEL, run=False)
    async def test_structured_output_async(self, *args: Any, **kwargs: Any) -> None: ...

    @pytest.mark.xfail(reason=_SMALL_MODEL, run=False)
    def test_structured_output_pydantic_2_v1(self, *args: Any, **kwargs: Any) -> None: ...

    @pytest.mark.xfail(reason=_SMALL_MODEL, run=False)
    def test_structured_output_optional_param(self, *args: Any, **kwargs: Any) -> None: ...

    @pytest.mark.xfail(run=False, reason="SmolLM2-135M does not call get_weather unless forced, and this test "
                             "binds the tool without tool_choice; the same loop with a forced "
                             "call runs in tests/integration/test_vllm_partial.py")
    def test_agent_loop(self, *args: Any, **kwargs: Any) -> None: ...
