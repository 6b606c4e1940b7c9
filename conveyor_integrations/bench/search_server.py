"""A local HTTP search server standing for a web search API, with a configurable latency.

``GET /search?q=<query>`` waits ``latency_s`` and answers 200 JSON
``{"results": [{"title", "url", "snippet"}, ...]}``: three fake results derived
deterministically from the query (the same query always gets the same answer). Any other path
is a 404, except ``GET /page?url=<url>``, which waits the same latency and answers
``{"url", "title", "text"}``: a deterministic page of a few hundred characters for any URL (the
server stands for the whole web, as a fetch tool sees it). The latency stands for the network and the search engine behind it and is simulated
(a sleep on the request's own thread, so concurrent requests overlap as they would against a
real API). It speaks the contract of :func:`conveyor_integrations.tools.search.search_tool`.
Example::

    with SearchServer(latency_s=0.5) as server:
        web_search = search_tool(server.url, allow_hosts=["127.0.0.1"])
        text = await web_search(["weather in Paris", "population of Lyon"])
        assert server.requests == 2
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

__all__ = ["SearchServer", "fake_page", "fake_results"]

_TOPICS = ("overview", "history", "statistics", "news", "guide", "reference", "forum", "study")


def fake_results(query: str, n: int = 3) -> list[dict[str, str]]:
    """``n`` deterministic fake search results for ``query``.

        >>> fake_results("paris")[0]["title"].startswith("paris")
        True
    """
    results = []
    for i in range(n):
        digest = hashlib.sha256(f"{i}:{query}".encode()).hexdigest()
        topic = _TOPICS[int(digest[:2], 16) % len(_TOPICS)]
        results.append({
            "title": f"{query} — {topic}",
            "url": f"https://search.example/{digest[:12]}",
            "snippet": f"Result {i + 1} for {query!r}: {topic} (ref {digest[12:20]}).",
        })
    return results


_SENTENCES = (
    "The figures were last revised in the spring, after the statistics office's annual review.",
    "Earlier estimates differed by a few percent because the boundaries were drawn differently.",
    "Analysts quoted here expect the trend of the past five years to continue.",
    "A table at the end of the article lists the values by year and by district.",
    "Readers pointed out that the previous edition used provisional numbers.",
    "The methodology section explains how missing values were interpolated.",
)


def fake_page(url: str) -> dict[str, str]:
    """The deterministic page the server answers for ``url``.

        >>> fake_page("https://search.example/abc")["text"] == fake_page("https://search.example/abc")["text"]
        True
    """
    digest = hashlib.sha256(url.encode()).hexdigest()
    picks = [_SENTENCES[int(digest[i:i + 2], 16) % len(_SENTENCES)] for i in range(0, 8, 2)]
    value = int(digest[8:14], 16) % 90000 + 10000
    text = f"Key figure: {value:,} (ref {digest[14:22]}). " + " ".join(picks)
    return {"url": url, "title": f"Page {digest[:8]}", "text": text}


class _Server(ThreadingHTTPServer):
    daemon_threads = False                      # request threads are joined by server_close()
    block_on_close = True
    owner: SearchServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass                                    # a client that hung up before the answer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10.0                              # a stalled client cannot hold stop() forever

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        owner = self.server.owner
        owner._count()
        url = urlsplit(self.path)
        if url.path not in ("/search", "/page"):
            self._send(404, b'{"error": "not found"}')
            return
        params = parse_qs(url.query)
        time.sleep(owner.latency_s)
        if url.path == "/page":
            answer: Any = fake_page(params.get("url", [""])[0])
        else:
            answer = {"results": fake_results(params.get("q", [""])[0])}
        self._send(200, json.dumps(answer, ensure_ascii=False).encode())


class SearchServer:
    """The search server on a daemon thread; ``start()``/``stop()`` or use it as a context manager.

    ``url`` is the search endpoint once started; ``requests`` counts the requests received
    (any path).
    """

    def __init__(self, latency_s: float = 1.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.latency_s = latency_s
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._requests = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _count(self) -> None:
        with self._lock:
            self._requests += 1

    @property
    def requests(self) -> int:
        """Requests received so far."""
        with self._lock:
            return self._requests

    @property
    def url(self) -> str:
        """The search endpoint, e.g. ``http://127.0.0.1:PORT/search`` (after ``start()``)."""
        if self._server is None:
            raise RuntimeError("SearchServer is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/search"

    @property
    def thread(self) -> threading.Thread | None:
        """The serving thread while started."""
        return self._thread

    def start(self) -> Self:
        """Bind and serve on a daemon thread (no-op if already started)."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="search-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()               # also joins the request threads in flight
        if thread is not None:
            thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
