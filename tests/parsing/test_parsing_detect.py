"""``tool_format="auto"``: the format from a chat template's markers or a model's name, and a
clear error (naming the formats) where it cannot tell or has no parser."""

from __future__ import annotations

import asyncio

import pytest

from conveyor_integrations.parsing import PARSERS
from conveyor_integrations.parsing.detect import (
    FAMILIES,
    UnknownToolFormat,
    format_from_model_name,
    format_from_template,
)

KNOWN = ("openai", "hermes", "llama3_json", "mistral", "fenced_code", "plan", "qwen3_xml",
         "pythonic", "harmony", "deepseek_v3", "glm45", "kimi_k2")

# the tool part of each family's chat template, as its documentation shows it
TEMPLATES = {
    "hermes": ('For each function call, return a json object with function name and arguments '
               'within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": '
               '<function-name>, "arguments": <args-json-object>}\n</tool_call>'),
    "qwen3_xml": ("<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>"
                  "\nvalue_1\n</parameter>\n</function>\n</tool_call>"),
    "mistral": "{%- if message.tool_calls %}[TOOL_CALLS][{%- for tool in message.tool_calls %}",
    "llama3_json": ('Respond in the format {"name": function name, "parameters": dictionary of '
                    'argument name and its value}. Do not use variables.'),
    "pythonic": ("[func_name1(params_name1=params_value1, params_name2=params_value2...), "
                 "func_name2(params)]"),
    "deepseek_v3": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>",
    "kimi_k2": "<|tool_calls_section_begin|><|tool_call_begin|>functions.get:0",
    "glm45": "<tool_call>{{ name }}\n<arg_key>{{ k }}</arg_key>\n<arg_value>",
    "harmony": ("<|start|>assistant<|channel|>commentary to=functions.' + tool_call.name + ' "
                "<|constrain|>json<|message|>"),
}
NO_PARSER = {
    "DeepSeek V3.2 / V4 (DSML)": "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"{{ name }}\">",
}


@pytest.mark.parametrize("fmt", sorted(TEMPLATES))
def test_each_family_by_its_template(fmt: str) -> None:
    assert format_from_template("{{ bos }}" + TEMPLATES[fmt] + "{% endif %}", known=KNOWN) == fmt


@pytest.mark.parametrize("label", sorted(NO_PARSER))
def test_a_family_without_a_parser_is_named(label: str) -> None:
    with pytest.raises(UnknownToolFormat) as info:
        format_from_template(NO_PARSER[label], known=KNOWN)
    assert label in str(info.value) and "no parser" in str(info.value)
    assert "hermes, kimi_k2, llama3_json, mistral" in str(info.value)


def test_a_family_whose_parser_is_not_there_is_named() -> None:
    with pytest.raises(UnknownToolFormat, match="GLM-4.5 / 4.6 / 4.7.*no parser"):
        format_from_template(TEMPLATES["glm45"], known=("hermes",))


def test_an_unknown_template_names_the_formats() -> None:
    with pytest.raises(UnknownToolFormat, match="Pass tool_format=one of: deepseek_v3, glm45"):
        format_from_template("{{ messages }} tools: {{ tools | tojson }}", known=KNOWN)
    assert issubclass(UnknownToolFormat, ValueError)


@pytest.mark.parametrize("name,fmt", [
    ("Qwen/Qwen2.5-7B-Instruct", "hermes"), ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen3_xml"),
    ("NousResearch/Hermes-3-Llama-3.1-8B", "hermes"), ("/models/smollm2-135m-instruct", "hermes"),
    ("mistralai/Mistral-Small-3.2-24B-Instruct-2506", "mistral"),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama3_json"),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "pythonic"),
    ("openai/gpt-oss-20b", "harmony"), ("deepseek-ai/DeepSeek-V3.1", "deepseek_v3"),
    ("deepseek-ai/DeepSeek-R1-0528", "deepseek_v3"), ("deepseek-ai/DeepSeek-V3.2-Exp",
                                                      "deepseek_v3"),
    ("moonshotai/Kimi-K2-Instruct-0905", "kimi_k2"), ("zai-org/GLM-4.5-Air", "glm45"),
    ("zai-org/GLM-4.7", "glm45"),
])
def test_model_names(name: str, fmt: str) -> None:
    assert format_from_model_name(name, known=KNOWN) == fmt


def test_a_known_family_whose_parser_is_missing_is_an_error() -> None:
    with pytest.raises(UnknownToolFormat, match="Qwen3-Coder"):
        format_from_model_name("Qwen/Qwen3-Coder-30B", known=("hermes",))
    with pytest.raises(UnknownToolFormat, match="DeepSeek V3.2 / V4"):
        format_from_model_name("deepseek-ai/DeepSeek-V3.2")


def test_every_family_format_is_a_parser_or_none() -> None:
    formats = {f.format for f in FAMILIES} - {None}
    assert formats <= set(KNOWN)
    assert {"hermes", "mistral", "llama3_json"} <= set(PARSERS)


def test_models_take_auto_and_refuse_an_unknown_format_when_made() -> None:
    pytest.importorskip("langchain_core")
    from conveyor_integrations.adapters.langchain import ChatConveyor
    from conveyor_integrations.backends import Replay

    with pytest.raises(ValueError, match="unknown tool_format 'xml'"):
        ChatConveyor(backend=Replay("hi"), tool_format="xml")
    text = ChatConveyor(backend=Replay("hi"))
    deltas = ChatConveyor(backend=Replay([[{"content": "hi"}]]))
    assert text.tool_format == "auto"
    got = [m.invoke("x").response_metadata["conveyor"]["tool_format"] for m in (text, deltas)]
    assert got == ["hermes", "openai"]


def test_llamaindex_takes_auto_and_refuses_an_unknown_format() -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.llms import ChatMessage

    from conveyor_integrations.adapters.llamaindex import ConveyorLLM
    from conveyor_integrations.backends import Replay

    with pytest.raises(ValueError, match="unknown tool_format 'xml'"):
        ConveyorLLM(backend=Replay("hi"), tool_format="xml")
    llm = ConveyorLLM(backend=Replay("hi"))
    response = asyncio.run(llm.achat([ChatMessage(role="user", content="x")]))
    assert response.additional_kwargs["conveyor"]["tool_format"] == "hermes"
