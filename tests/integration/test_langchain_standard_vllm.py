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

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "json_schema"}

    @property
    def supports_json_mode(self) -> bool:
        return True

    # ----------------------------------------------------------------------------------------
    # Structured output runs with method="json_schema": VLLMEngine constrains decoding with the
    # schema (structured_outputs), and SmolLM2-135M then finishes the joke within the budget
    # for the suite's "Tell me a joke about cats." prompts. (The forced call of
    # "function_calling" does not: the model keeps writing inside a string field.)
    # Not run (xfail, run=False), with the reason; langchain-tests accepts overrides only so.
    # Every other test of the suite runs against the real engine. The suite's own skips:
    # model_override_value (one model per engine), PDF, audio, image and Anthropic-style inputs
    # (SmolLM2-135M is a text model), VCR (no recorded HTTP: the engine is in-process).
    _LOOPS = ("SmolLM2-135M, constrained to the JSON, loops inside a string field on this "
              "test's first prompt ({}) until max_tokens (finish_reason='length'), so the answer "
              "does not parse; the same path passes the suite's other structured-output tests, "
              "and tests/adapters/test_structured_output.py covers the method over Replay.")

    @pytest.mark.xfail(reason=_LOOPS.format('"Give me the setup to a joke about cats, no '
                                            'punchline."'), run=False)
    def test_structured_output_optional_param(self, *args: Any, **kwargs: Any) -> None: ...

    @pytest.mark.xfail(reason=_LOOPS.format("\"Return the result as a JSON with 'setup' and "
                                            "'punchline' keys\", method='json_mode'"),
                       run=False)
    def test_json_mode(self, *args: Any, **kwargs: Any) -> None: ...

    @pytest.mark.xfail(run=False, reason="SmolLM2-135M does not call get_weather unless forced, and this test "
                             "binds the tool without tool_choice; the same loop with a forced "
                             "call runs in tests/integration/test_vllm_partial.py")
    def test_agent_loop(self, *args: Any, **kwargs: Any) -> None: ...
