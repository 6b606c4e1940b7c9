"""A tiny OpenAI-compatible chat server on 127.0.0.1 that streams recorded chunks (for tests).

``FakeOpenAIServer(turns, delay_s)`` serves ``POST /v1/chat/completions`` with ``stream=True``:
each request gets the next recorded turn, a list of delta dicts, sent as server-sent events with
``delay_s`` between them. It records the requests it received. Use as a context manager.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class FakeOpenAIServer:
    def __init__(self, turns: list[list[dict[str, Any]]], delay_s: float = 0.01,
                 cut_after: int | None = None) -> None:
        self.turns, self.delay_s, self.cut_after = list(turns), delay_s, cut_after
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                deltas = server.turns.pop(0) if server.turns else [{"content": "(no more)"}]
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for i, delta in enumerate(deltas):
                        if server.cut_after is not None and i >= server.cut_after:
                            self.connection.close()        # the server dies mid-stream
                            return
                        finish = delta.pop("finish_reason", None)
                        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk",
                                 "created": 0, "model": "fake",
                                 "choices": [{"index": 0, "delta": delta,
                                              "finish_reason": finish}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(server.delay_s)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return

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


def tool_call_deltas(call_id: str, name: str, args: dict[str, Any], index: int = 0,
                     piece: int = 6) -> list[dict[str, Any]]:
    """The deltas a server sends for one tool call, arguments cut into ``piece``-char fragments."""
    text = json.dumps(args)
    out: list[dict[str, Any]] = [{"role": "assistant", "content": None, "tool_calls": [
        {"index": index, "id": call_id, "type": "function",
         "function": {"name": name, "arguments": ""}}]}]
    for i in range(0, len(text), piece):
        out.append({"tool_calls": [{"index": index,
                                    "function": {"arguments": text[i:i + piece]}}]})
    return out
