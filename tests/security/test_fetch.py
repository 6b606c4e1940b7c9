"""fetch / search tools under hostile URLs: non-public addresses are never connected to, directly
or through a redirect; configured headers never reach another host; only http(s)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpcore
import pytest

from conveyor_integrations.tools import net_guard
from conveyor_integrations.tools.net_guard import NetGuard, address_problem
from conveyor_integrations.tools.search import (
    HttpOptions,
    aclose_shared_client,
    fetch_tool,
    http_get_text,
    search_tool,
)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[tuple[str, str | None]]       # (path, Authorization header) received
    body: bytes


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        url = urlsplit(self.path)
        to = parse_qs(url.query).get("to", [""])[0]
        if url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if url.path == "/loop":
            self.send_response(301)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start(body: bytes) -> tuple[Server, threading.Thread]:
    srv = Server(("127.0.0.1", 0), Handler)
    srv.requests, srv.body = [], body
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return srv, thread


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    """``(allowed, admin)``: two loopback servers; only the first is put on allow-lists."""
    (a, ta), (b, tb) = start(b"ok"), start(b"admin secrets")
    yield a, b
    for srv, thread in ((a, ta), (b, tb)):
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def url(srv: Server, path: str = "/page", host: str = "127.0.0.1") -> str:
    return f"http://{host}:{srv.server_address[1]}{path}"


def port(srv: Server) -> int:
    return int(srv.server_address[1])


def get(target: str, opts: HttpOptions) -> str:
    async def go() -> str:
        try:
            return await http_get_text(target, None, opts)
        finally:
            await aclose_shared_client()
    return asyncio.run(go())


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (address, port) the transport was asked to connect to; none is made for real."""
    seen: list[tuple[str, int]] = []

    async def fake(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        seen.append((host, port))
        raise httpcore.ConnectError("test: no real connection")

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", fake)
    return seen


def test_loopback_admin_refused_directly_and_through_a_302(servers: tuple[Server, Server]) -> None:
    allowed, admin = servers
    opts = HttpOptions(retries=0, allow_hosts=[f"127.0.0.1:{port(allowed)}"])
    assert get(url(admin), opts) == ("error: refused: 127.0.0.1: 127.0.0.1 is a loopback "
                                     "address")
    assert get(url(admin), HttpOptions(retries=0)).startswith("error: refused: ")
    hop = url(allowed, "/redirect?to=" + url(admin, "/admin"))
    assert get(hop, opts).startswith("error: refused: 127.0.0.1: 127.0.0.1 is a loopback")
    assert admin.requests == []                                  # never reached, either way
    assert [p for p, _ in allowed.requests] == [urlsplit(hop).path + "?" + urlsplit(hop).query]
    assert get(url(allowed), opts) == "ok"                       # the allowed one still works


def test_the_tools_refuse_loopback_by_default(servers: tuple[Server, Server]) -> None:
    allowed, _ = servers

    async def go() -> tuple[str, str]:
        try:
            fetch, search = fetch_tool(retries=0), search_tool(url(allowed, "/s"), retries=0)
            return await fetch([url(allowed)]), await search(["q"])
        finally:
            await aclose_shared_client()

    fetched, searched = asyncio.run(go())
    assert fetched.endswith("\nerror: refused: 127.0.0.1: 127.0.0.1 is a loopback address")
    assert searched.endswith("\nerror: refused: 127.0.0.1: 127.0.0.1 is a loopback address")
    assert allowed.requests == []


BLOCKED = ["169.254.169.254", "[fd00::1]", "[fd00:ec2::254]", "10.0.0.1", "172.16.0.1",
           "172.31.255.255", "192.168.1.1", "127.0.0.2", "[::1]", "0.0.0.0", "[::]",
           "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "100.100.100.200",
           "192.0.0.192", "[fe80::1]", "[ff02::1]", "[::ffff:127.0.0.1]",
           "[::ffff:169.254.169.254]", "[::ffff:10.0.0.1]", "[64:ff9b::7f00:1]",
           "[2002:7f00:1::]", "[2001:0:4136:e378:8000:63bf:80ff:fffe]", "2130706433",
           "0x7f.1", "0177.0.0.1", "127.1", "localhost"]


@pytest.mark.parametrize("host", BLOCKED)
def test_non_public_addresses_never_reach_the_transport(host: str,
                                                        connects: list[tuple[str, int]]) -> None:
    out = get(f"http://{host}:8080/latest/meta-data/", HttpOptions(retries=0))
    assert out.startswith(("error: refused: ", "error: invalid URL")), out
    assert connects == []


def test_addresses_are_classified() -> None:
    import ipaddress
    assert address_problem(ipaddress.ip_address("93.184.216.34")) is None
    assert address_problem(ipaddress.ip_address("2606:4700::1111")) is None
    assert address_problem(ipaddress.ip_address("::ffff:8.8.8.8")) is None
    assert address_problem(ipaddress.ip_address("169.254.169.254")) == "link-local"
    assert address_problem(ipaddress.ip_address("::ffff:127.0.0.1")) == "loopback"
    guard = NetGuard(allow_networks=["10.1.0.0/16"], allow_hosts=["[::1]:81", "Search.Local."])
    assert guard.check("x", 1, "10.1.2.3") is None and guard.check("x", 1, "10.2.0.1")
    assert guard.check("x", 1, "::ffff:10.1.2.3") is None
    assert guard.check("::1", 81, "::1") is None and guard.check("::1", 82, "::1")
    assert guard.check("search.local", 9, "127.0.0.1") is None
    assert NetGuard(("a", "b")) == NetGuard(("b", "a"))              # one pool per guard


def test_connects_to_the_checked_address_not_the_name(monkeypatch: pytest.MonkeyPatch,
                                                      connects: list[tuple[str, int]]) -> None:
    # DNS rebinding: a name answering public first and loopback later. The name is resolved
    # once per connection, checked, and the connection goes to that IP literal.
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    async def resolve(host: str, port: int) -> list[str]:
        return next(answers)

    monkeypatch.setattr(net_guard, "_resolve", resolve)
    assert get("http://rebind.test/", HttpOptions(retries=0)).startswith("error: failed")
    assert connects == [("93.184.216.34", 80)]
    assert get("http://rebind.test/", HttpOptions(retries=0)) == (
        "error: refused: rebind.test: 127.0.0.1 is a loopback address")
    assert connects == [("93.184.216.34", 80)]


def test_authorization_is_not_sent_to_another_host(servers: tuple[Server, Server]) -> None:
    a, b = servers
    allow = [f"127.0.0.1:{port(a)}", f"localhost:{port(b)}"]
    hop = url(a, "/redirect?to=" + url(b, "/echo", host="localhost"))

    async def go() -> tuple[str, str]:
        try:
            search = search_tool(hop, headers={"Authorization": "Bearer s3cret"},
                                 allow_hosts=allow, retries=0)
            fetch = fetch_tool(headers={f"127.0.0.1:{port(a)}": {"Authorization": "Bearer f"}},
                               allow_hosts=allow, retries=0)
            return await search(["q"]), await fetch([hop, url(b, "/direct", host="localhost")])
        finally:
            await aclose_shared_client()

    searched, fetched = asyncio.run(go())
    assert "admin secrets" in searched and fetched.count("admin secrets") == 2
    assert [auth for _, auth in a.requests] == ["Bearer s3cret", "Bearer f"]
    assert [auth for _, auth in b.requests] == [None, None, None]    # dropped on the hop
    with pytest.raises(TypeError):
        fetch_tool(headers={"Authorization": "Bearer x"})  # type: ignore[dict-item]


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://example.org/",
                                    "gopher://127.0.0.1:70/", "data:text/plain,hi",
                                    "javascript:alert(1)"])
def test_only_http_schemes(target: str, connects: list[tuple[str, int]]) -> None:
    out = get(target, HttpOptions(retries=0, allow_networks=["0.0.0.0/0", "::/0"]))
    assert out.startswith("error: "), out
    assert connects == []


def test_redirects_are_checked_and_limited(servers: tuple[Server, Server]) -> None:
    a, _ = servers
    opts = HttpOptions(retries=0, max_redirects=3, allow_networks=["127.0.0.0/8"])
    out = get(url(a, "/redirect?to=file:///etc/passwd"), opts)
    assert out == "error: refused: only http:// and https:// URLs can be fetched, not file:"
    assert get(url(a, "/loop"), opts) == "error: refused: more than 3 redirects"
    assert len(a.requests) == 1 + 4
