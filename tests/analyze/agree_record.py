"""A recorded agent run for the agreement tests, kept three ways at once.

A LangChain ``create_agent`` with ``ChatOpenAI`` runs against :class:`ReplayServer`, a local
OpenAI-compatible server that streams the agreement messages token by token on Replay's own
schedule (the same 1-8 character tokens, token ``k`` at ``(k + 1) / rate`` after the request),
as ``vllm serve --tool-call-parser hermes`` would: text as ``content``, the call as
``tool_calls`` deltas whose ``arguments`` grow with each token. So the recorded run and the
benchmark's Replay decode the same text at the same times. The run is kept as

- a LangSmith export: langchain-core's own tracer's runs, dumped with their ``child_runs``;
- OTLP JSON: ``chat`` spans from :func:`conveyor_integrations.otel.instrument` with a
  ``ConveyorCallbackHandler`` on the model, and ``execute_tool`` spans written here around each
  tool run (as an OTel instrumentation of the tools would), exported with the OTLP encoder;
- a chat log: what the server sent and when (a logging proxy's view), with the tool runs.
"""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from uuid import UUID

from conveyor_integrations.backends.replay import split_tokens

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def _regions(text: str) -> list[tuple[int, int, int, int, int, str]]:
    """Each call's ``(start, end, args start, args end, name end, name)`` in ``text``."""
    out, at = [], 0
    while (c0 := text.find(OPEN, at)) >= 0:
        c1 = text.index(CLOSE, c0) + len(CLOSE)
        inner = text[c0 + len(OPEN):c1 - len(CLOSE)]
        name = json.loads(inner)["name"]
        a0 = c0 + len(OPEN) + inner.index('"arguments": ') + len('"arguments": ')
        named = c0 + len(OPEN) + inner.index(f'"{name}"') + len(name) + 2
        out.append((c0, c1, a0, c1 - len(CLOSE) - 1, named, name))
        at = c1
    return out


def openai_deltas(text: str, call_id: str = "call_0", seed: int = 0) -> list[dict[str, Any]]:
    """``text`` (hermes) as one OpenAI delta per Replay token; call ``i`` gets the id
    ``{call_id}_{i}``."""
    regions = _regions(text)
    out: list[dict[str, Any]] = []
    pos = 0
    for tok in split_tokens(text, random.Random(seed)):
        p, q = pos, pos + len(tok)
        pos = q
        delta: dict[str, Any] = {}
        content, last = [], p
        for c0, c1, *_ in regions:
            content.append(text[last:max(last, min(q, c0))])
            last = max(last, min(q, c1))
        content.append(text[last:q])
        if "".join(content):
            delta["content"] = "".join(content)
        calls = []
        for i, (_, _, a0, a1, named, name) in enumerate(regions):
            call: dict[str, Any] = {"index": i, "function": {"arguments": ""}}
            if p < named <= q:
                call.update(id=f"{call_id}_{i}", type="function")
                call["function"]["name"] = name
            if named <= q:
                call["function"]["arguments"] = text[max(p, a0):max(p, min(q, a1))]
            if "id" in call or call["function"]["arguments"]:
                calls.append(call)
        if calls:
            delta["tool_calls"] = calls
        out.append(delta or {"content": ""})
    return out


class ReplayServer:
    """Streams the next message per request at ``rate`` tokens/s; logs what it sent."""

    def __init__(self, messages: list[str], rate: float) -> None:
        self.messages, self.rate = list(messages), rate
        self.log: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                started = time.time()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = server.messages.pop(0)
                entry: dict[str, Any] = {"run": "agent", "started": started,
                                         "request": {"model": body.get("model"),
                                                     "messages": body.get("messages")},
                                         "chunks": []}
                server.log.append(entry)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                t0 = time.perf_counter()
                deltas = openai_deltas(text, f"call_{len(server.log)}")
                for k, delta in enumerate(deltas):
                    time.sleep(max(0.0, t0 + (k + 1) / server.rate - time.perf_counter()))
                    last = k == len(deltas) - 1
                    finish = ("tool_calls" if OPEN in text else "stop") if last else None
                    self._send(entry, {"choices": [{"index": 0, "delta": delta,
                                                    "finish_reason": finish}]})
                self._send(entry, {"choices": [], "usage": {
                    "prompt_tokens": 10, "completion_tokens": len(deltas),
                    "total_tokens": 10 + len(deltas)}})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _send(self, entry: dict[str, Any], body: dict[str, Any]) -> None:
                chunk = {"id": "chatcmpl-agree", "object": "chat.completion.chunk",
                         "created": 0, "model": "replay", **body}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                entry["chunks"].append({"t": time.time(), "chunk": chunk})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def _tool_recorder(tracer: Any) -> Any:
    """A callback handler that keeps each tool run (for the chat log) and writes its
    ``execute_tool`` span (for OTLP)."""
    from langchain_core.callbacks import BaseCallbackHandler
    from opentelemetry.trace import Status, StatusCode

    class ToolRecorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.open: dict[UUID, tuple[float, Any, str]] = {}
            self.results: list[dict[str, Any]] = []

        def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID,
                          **kwargs: Any) -> None:
            name = str(serialized.get("name") or kwargs.get("name"))
            span = tracer.start_span(f"execute_tool {name}", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name})
            self.open[run_id] = (time.time(), span, name)

        def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
            self._end(run_id, getattr(output, "tool_call_id", None), None)

        def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
            self._end(run_id, None, error)

        def _end(self, run_id: UUID, call_id: Any, error: BaseException | None) -> None:
            started, span, name = self.open.pop(run_id)
            if call_id:
                span.set_attribute("gen_ai.tool.call.id", str(call_id))
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, str(error)))
            span.end()
            self.results.append({"tool_call_id": call_id, "name": name, "started": started,
                                 "ended": time.time(), "error": error is not None})

    return ToolRecorder()


def _export(run: Any) -> dict[str, Any]:
    d = run.model_dump(serialize_as_any=True)      # each chunk as its own type dumps it
    d["child_runs"] = [_export(c) for c in run.child_runs]
    return d


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.isoformat()
                                 if isinstance(o, datetime) else str(o)))


async def record(messages: list[str], rate: float, tools: list[Any], folder: Path
                 ) -> tuple[dict[str, Path], list[Any]]:
    """Run the agent over ``messages`` (each model request gets the next) with ``tools``;
    write ``langsmith.json``, ``spans.json`` and ``chatlog.jsonl`` into ``folder``. Returns
    the paths by kind and the agent's final messages."""
    from google.protobuf.json_format import MessageToJson
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage
    from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
    from langchain_openai import ChatOpenAI
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from conveyor_integrations import otel
    from conveyor_integrations.adapters.langchain import ConveyorCallbackHandler

    exporter, provider = InMemorySpanExporter(), TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("agreement")
    otel.instrument(tracer_provider=provider)
    try:
        with ReplayServer(messages, rate) as server:
            model = ChatOpenAI(base_url=server.base_url, api_key="unused", model="replay",
                               streaming=True, stream_usage=True, max_retries=0,
                               callbacks=[ConveyorCallbackHandler(tools=[])])
            agent = create_agent(model, tools=tools)
            collector, recorder = RunCollectorCallbackHandler(), _tool_recorder(tracer)
            with tracer.start_as_current_span("invoke_agent agreement"):
                out = await agent.ainvoke({"messages": [HumanMessage("How many live in Lyon?")]},
                                          config={"callbacks": [collector, recorder]})
    finally:
        otel.uninstrument()
    (root,) = collector.traced_runs
    paths = {"langsmith": folder / "langsmith.json", "otlp": folder / "spans.json",
             "chatlog": folder / "chatlog.jsonl"}
    paths["langsmith"].write_text(json.dumps(_plain(_export(root))))
    paths["otlp"].write_text(MessageToJson(encode_spans(exporter.get_finished_spans())))
    for entry, results in zip(server.log, _results_by_request(server.log, recorder.results),
                              strict=True):
        entry["tool_results"] = results
    paths["chatlog"].write_text("".join(json.dumps(e) + "\n" for e in server.log))
    return paths, list(out["messages"])


def _results_by_request(log: list[dict[str, Any]], results: list[dict[str, Any]]
                        ) -> list[list[dict[str, Any]]]:
    """Each tool run on the request it answered: the last one sent before it started."""
    out: list[list[dict[str, Any]]] = [[] for _ in log]
    for r in results:
        before = [i for i, e in enumerate(log) if e["started"] <= r["started"]]
        out[before[-1]].append(r)
    return out
