"""Search / fetch tools against a local HTTP server (127.0.0.1) whose delay stands for latency.

Shows that requests reach the server while the call is still being decoded, that the result
under partial execution equals the complete call's, and the retry, size-cap and timeout paths.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conveyor_integrations.backends import ChatRequest, Replay
from conveyor_integrations.events import CallDone, CallStarted, ItemDone
from conveyor_integrations.parsing import get_parser
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.tools.search import (
    HttpOptions,
    aclose_shared_client,
    fetch_tool,
    http_get_text,
    render_json,
    search_tool,
)
from conveyor_integrations.turn import run_turn


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass                                     # a client that gave up (timeout test)
    delay = 0.0                                  # seconds each answer waits: network latency
    arrivals: list[tuple[float, str]]            # (perf_counter, query) per request received
    fail_first: dict[str, int]                   # query -> how many 503s to send first


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = parse_qs(url.query).get("q", [""])[0]
        self.server.arrivals.append((time.perf_counter(), q or url.path))
        if self.server.fail_first.get(q, 0) > 0:
            self.server.fail_first[q] -= 1
            return self._send(503, b"busy", "text/plain")
        time.sleep(self.server.delay)
        if url.path == "/search":
            results = [{"title": f"{q} #{i}", "url": f"http://x/{i}", "snippet": q[::-1]}
                       for i in range(2)]
            return self._send(200, json.dumps({"results": results}).encode())
        if url.path == "/big":
            return self._send(200, b"x" * 50_000, "text/plain")
        if url.path == "/slow":
            time.sleep(1)
            return self._send(200, b"late", "text/plain")
        if url.path == "/page":
            return self._send(200, "<p>héllo</p>".encode(), "text/html; charset=utf-8")
        return self._send(404, b"no such page", "text/plain")


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(("127.0.0.1", 0), Handler)
    srv.arrivals, srv.fail_first = [], {}
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def base(srv: Server) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


LOCAL = ("127.0.0.1",)            # the test servers are on loopback, refused unless allowed


def one_block(query: str) -> str:
    lines = [f"- {query} #{i} <http://x/{i}>: {query[::-1]}" for i in range(2)]
    return f"## {query}\n" + "\n".join(lines)


async def test_requests_start_before_the_call_is_decoded(sched: Scheduler,
                                                         server: Server) -> None:
    server.delay = 0.2
    tool = search_tool(base(server) + "/search", scheduler=sched, allow_hosts=LOCAL)
    queries = ["weather in Paris tomorrow", "population of Lyon in 2024",
               "distance from Paris to Lyon by train"]
    text = ("I will search for these.\n<tool_call>" +
            json.dumps({"name": "web_search", "arguments": {"queries": queries}}) +
            "</tool_call>")
    session = sched.session(tools=[tool])
    result = await run_turn(Replay(text, tokens_per_s=50, seed=3), ChatRequest([]),
                            parser=get_parser("hermes", streams={}),
                            session=session)
    (call,) = result.calls
    found, value = await sched.aclaim(call.id)
    assert found and value == "\n".join(one_block(q) for q in queries)
    decode_end = session.decode_end
    assert decode_end is not None
    arrived = sorted(server.arrivals)
    assert [q for _, q in arrived] == queries           # sent in the order they were decoded
    assert arrived[0][0] < decode_end                   # the first went out mid-decode
    timing = session.timings[0]
    assert timing.early and timing.tool_start is not None and timing.args_final is not None
    assert timing.tool_start < timing.args_final


def test_partial_equals_complete_on_generated_query_lists(sched: Scheduler,
                                                          server: Server) -> None:
    web_search = search_tool(base(server) + "/search", scheduler=sched, allow_hosts=LOCAL)
    rng = random.Random(7)
    words = ["paris", "lyon", "été", "a&b=c", "100%", "x y", "naïve?", "#tag", ""]
    for n in range(6):
        queries = [" ".join(rng.sample(words, rng.randint(1, 3))) for _ in range(n)]
        s = sched.session(tools=[web_search])
        s.handle([CallStarted(0, f"c{n}", "web_search")] +
                 [ItemDone(0, ("queries",), i, q) for i, q in enumerate(queries)] +
                 [CallDone(0, f"c{n}", "web_search", {"queries": queries})])
        found, partial = sched.claim(f"c{n}")
        complete = asyncio.run(web_search(queries))     # claimed already: runs in full
        assert found and partial == complete
        assert complete == "\n".join(one_block(q) for q in queries)


def test_retries_a_503_then_succeeds(server: Server) -> None:
    server.fail_first = {"flaky": 2}
    opts = HttpOptions(retries=2, backoff=0.01, allow_hosts=LOCAL)
    text = asyncio.run(http_get_text(base(server) + "/search", {"q": "flaky"}, opts))
    assert text == one_block("flaky").split("\n", 1)[1]
    assert [q for _, q in server.arrivals] == ["flaky"] * 3


def test_gives_up_after_the_retries(server: Server) -> None:
    server.fail_first = {"down": 5}
    opts = HttpOptions(retries=1, backoff=0.01, allow_hosts=LOCAL)
    text = asyncio.run(http_get_text(base(server) + "/search", {"q": "down"}, opts))
    assert text == "error: failed after 2 attempts: HTTP 503 Service Unavailable"


def test_connection_refused_is_an_error_line() -> None:
    opts = HttpOptions(retries=1, backoff=0.01, allow_hosts=LOCAL)
    text = asyncio.run(http_get_text("http://127.0.0.1:9/search", {"q": "x"}, opts))
    assert text.startswith("error: failed after 2 attempts: ConnectError")


def test_size_cap(server: Server) -> None:
    async def get(max_bytes: int) -> str:
        try:
            return await http_get_text(base(server) + "/big", None,
                                       HttpOptions(max_bytes=max_bytes, allow_hosts=LOCAL))
        finally:
            await aclose_shared_client()

    assert asyncio.run(get(1000)) == "x" * 1000 + "\n[truncated at 1000 bytes]"
    assert asyncio.run(get(50_000)) == "x" * 50_000


def test_timeout_error_message(server: Server) -> None:
    opts = HttpOptions(timeout=0.3, retries=2, allow_hosts=LOCAL)
    text = asyncio.run(http_get_text(base(server) + "/slow", None, opts))
    assert text == "error: timed out after 0.3 s"
    assert len(server.arrivals) == 1                     # a timeout is not retried


def test_fetch_tool(sched: Scheduler, server: Server) -> None:
    fetch = fetch_tool(scheduler=sched, allow_hosts=LOCAL)
    urls = [base(server) + "/page", base(server) + "/missing", "file:///etc/passwd"]
    s = sched.session(tools=[fetch])
    s.handle([CallStarted(0, "f1", "fetch")] +
             [ItemDone(0, ("urls",), i, u) for i, u in enumerate(urls)] +
             [CallDone(0, "f1", "fetch", {"urls": urls})])
    found, partial = sched.claim("f1")
    assert found and partial == asyncio.run(fetch(urls))
    assert partial == (f"## {urls[0]}\n<p>héllo</p>\n"
                       f"## {urls[1]}\nerror: HTTP 404 Not Found: no such page\n"
                       f"## {urls[2]}\nerror: only http:// and https:// URLs can be fetched")


def test_render_json_falls_back_to_compact_json() -> None:
    assert render_json({"answer": 42}) == '{"answer":42}'
    assert render_json([{"title": "t", "link": "l", "content": "c"}]) == "- t <l>: c"
