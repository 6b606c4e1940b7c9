"""LangChain's own conformance suite for chat models (the ``langchain-tests`` package).

Every test of ``ChatModelUnitTests`` runs; the suite itself skips two, for these reasons:
``test_init_from_env`` (ChatConveyor reads no environment variables: there is no API key, the
backend is an object you pass) and ``test_serdes`` (not serialisable: the backend is a live
engine, client or replay, not configuration).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_tests")
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
