"""``conveyor serve``: its command line and supervision (no vLLM), then the real thing: the
session's server, used by ``ChatOpenAI`` + ``ConveyorCallbackHandler`` in ``create_agent`` with
an early tool start, and stopped with Ctrl-C leaving no process behind."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from conveyor_integrations import cli, serve
from conveyor_integrations.backends import bundled_model as bm

FAKE_SERVER = """
import http.server, sys
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
print("fake vLLM", sys.argv[1:], flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def test_server_command_has_the_cpu_and_tool_flags() -> None:
    cmd = serve.server_command("/m", port=8123, served_model_name="m1", chat_template="/t.jinja",
                               extra=["--max-model-len", "2048"])
    assert cmd[1:3] == ["-m", serve.server_module()]

    def flag(name: str) -> str:
        return cmd[cmd.index(name) + 1]

    assert flag("--model") == "/m" and flag("--port") == "8123" and flag("--host") == "127.0.0.1"
    assert flag("--kv-cache-memory-bytes") == str(512 << 20)
    assert flag("--tool-call-parser") == "hermes" and flag("--tool-strict-level") == "parameter"
    assert flag("--chat-template") == "/t.jinja" and flag("--served-model-name") == "m1"
    assert {"--enforce-eager", "--enable-prefix-caching", "--enable-auto-tool-choice"} <= set(cmd)
    assert cmd[-2:] == ["--max-model-len", "2048"]
    assert "--chat-template" not in serve.server_command("/m")
    env = serve.server_env({"OMP_NUM_THREADS": "4"})
    assert env["OMP_NUM_THREADS"] == "4" and env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


def test_usage_lines_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    lines = "\n".join(serve.usage_lines("http://127.0.0.1:8000/v1", "smollm2"))
    assert ('ChatOpenAI(base_url="http://127.0.0.1:8000/v1", api_key="EMPTY", model="smollm2", '
            "streaming=True, callbacks=[ConveyorCallbackHandler(tools=[...])])") in lines
    assert 'OpenAICompatible(base_url="http://127.0.0.1:8000/v1", model="smollm2")' in lines
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "request.override(tool_choice=" in out and "--tool-strict-level" in out


class _Tokenizer:
    """Renders like transformers' ``apply_chat_template`` (jinja2), with our tojson."""

    def __init__(self, template: str) -> None:
        self.template = template

    def apply_chat_template(self, messages: Any, tools: Any = None, tokenize: bool = False,
                            chat_template: str | None = None) -> str:
        jinja2 = pytest.importorskip("jinja2")
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = lambda x: json.dumps(x)
        return str(env.from_string(chat_template or self.template).render(
            messages=messages, tools=tools, add_generation_prompt=True))


@pytest.mark.parametrize(("template", "ours", "warns"), [
    (bm.TOOL_CHAT_TEMPLATE, False, False),                  # renders tools itself: kept
    (bm.TOOL_CHAT_TEMPLATE.replace("tools", "no_tools"), True, False),  # ChatML: ours
    ("{% for m in messages %}[{{ m['content'] }}]{% endfor %}", False, True),  # neither
])
def test_pick_template_for_another_model(monkeypatch: pytest.MonkeyPatch, template: str,
                                         ours: bool, warns: bool) -> None:
    transformers = pytest.importorskip("transformers")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda path: _Tokenizer(template))
    use, why = bm.pick_template("/models/x")
    assert use is ours and bool(why) is warns
    if warns:
        assert "will not see the tools" in why


def test_supervision_ready_lines_and_sigterm_stop(tmp_path: pathlib.Path) -> None:
    """A stand-in server: ``conveyor serve`` waits for /health, prints how to use it, and on
    SIGTERM stops the server's process group and exits 0."""
    (tmp_path / "fake.py").write_text(FAKE_SERVER)
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\nfrom conveyor_integrations import serve\n"
        "serve.server_command = lambda model, **kw: "
        f"[sys.executable, {str(tmp_path / 'fake.py')!r}, str(kw['port'])]\n"
        "sys.exit(serve.main(sys.argv[1:]))\n")
    from tests.vllm_fixtures import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script), "--model", str(tmp_path), "--chat-template", "t.jinja",
         "--port", str(port), "--log", str(tmp_path / "log")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        cwd=pathlib.Path(__file__).parent.parent)
    assert proc.stdout is not None
    lines: list[str] = []
    while not any("Ctrl-C stops" in ln for ln in lines):
        line = proc.stdout.readline().decode()
        assert line, "conveyor serve ended early:\n" + "".join(lines)
        lines.append(line)
    text = "".join(lines)
    assert f"ready at http://127.0.0.1:{port}/v1" in text
    assert f'OpenAICompatible(base_url="http://127.0.0.1:{port}/v1", model="{tmp_path.name}")' \
        in text
    server_pid = int(text.split("vLLM pid ")[1].split(")")[0])
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, rest
    assert "stopped" in rest
    with pytest.raises(ProcessLookupError):
        os.killpg(server_pid, 0)


# --- the real server (the session's one ``conveyor serve``) ---------------------------------


@pytest.mark.vllm
def test_create_agent_with_callback_handler_starts_the_tool_early(vllm_server: Any,
                                                                   sched: Any) -> None:
    pytest.importorskip("langchain_openai")
    from langchain.agents import create_agent
    from langchain.agents.middleware import wrap_model_call
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    from conveyor_integrations import partial_tool
    from conveyor_integrations.adapters.langchain import ConveyorCallbackHandler

    url = vllm_server.ensure()
    out = vllm_server.output()
    assert (f'ChatOpenAI(base_url="{url}", api_key="EMPTY", model="{vllm_server.model_name}", '
            "streaming=True") in out
    assert f'OpenAICompatible(base_url="{url}", model="{vllm_server.model_name}")' in out
    ran: list[str] = []

    @tool
    def lookup_weather(city: str) -> str:
        """Current weather of a city."""
        ran.append(city)
        time.sleep(0.3)
        return f"{city}: sunny, 21 C"

    lookup = partial_tool(lookup_weather, start_on=["city"])

    @wrap_model_call
    def call_lookup_first(request: Any, handler: Any) -> Any:
        # SmolLM2 calls a tool only when forced: the first turn names it
        if not any(isinstance(m, ToolMessage) for m in request.messages):
            request = request.override(tool_choice="lookup_weather")
        return handler(request)

    conveyor = ConveyorCallbackHandler(tools=[lookup])
    llm = ChatOpenAI(base_url=url, api_key="EMPTY", model=vllm_server.model_name,  # type: ignore[call-arg, arg-type]
                     streaming=True, callbacks=[conveyor], temperature=0.0, max_tokens=48)
    agent = create_agent(llm, tools=[lookup], middleware=[call_lookup_first])
    result = agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]},
                          {"recursion_limit": 6})
    msgs = result["messages"]
    call = msgs[1].tool_calls[0]
    assert call["name"] == "lookup_weather" and isinstance(call["args"]["city"], str)
    reply = next(m for m in msgs if isinstance(m, ToolMessage))
    assert reply.content == f"{call['args']['city']}: sunny, 21 C"
    assert ran == [call["args"]["city"]]                      # exactly once, started early
    timing = conveyor.sessions[0].timings[0]
    assert timing.early and not timing.reran           # started before decoding ended
    assert timing.tool_start is not None and timing.decode_end is not None
    assert timing.tool_start < timing.decode_end
    assert sched.pending() == 0


@pytest.mark.vllm
def test_ctrl_c_stops_the_server_and_its_engine(vllm_server: Any) -> None:
    vllm_server.ensure()
    assert vllm_server.server_pid and vllm_server.processes_left()
    status = vllm_server.stop()
    assert status == 0, vllm_server.output()
    assert "stopped (vLLM exit status 0)" in vllm_server.output()
    assert vllm_server.processes_left() == []
