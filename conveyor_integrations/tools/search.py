"""The Search workload: web search and page fetches that start as soon as each query is final.

``search_tool(endpoint)`` makes ``web_search(queries: list[str]) -> str`` and ``fetch_tool()``
makes ``fetch(urls: list[str]) -> str``. Both are decorated with ``partial_tool(items=...)``: the
core's :class:`~conveyor_integrations.strategies.EachItem` sends one request per list element the
moment the parser reports it final (``ItemDone``), all of them concurrently, while the model is
still decoding the rest of the call. The complete call gives exactly the same text, because the
tool itself is "one block per item, joined with a newline", which is the ``combine=`` it is
decorated with.

What is hand-written here is the HTTP plumbing around :mod:`httpx` (one shared
``httpx.AsyncClient`` per event loop, since the scheduler runs async tools on its own loop thread
and the framework may call them on another): a deadline per attempt, retries with exponential
backoff on connection errors and 5xx/429 answers, a cap on the response size (the body is
streamed and reading stops at ``max_bytes``), and one clear ``error: ...`` line per failed item
instead of an exception, so one bad query does not hide the others' results.

The search endpoint contract (any HTTP search API, or a thin proxy in front of one)::

    GET <endpoint>?<query_param>=<query>&<params...>
    -> 200, text/*: the body is the result, as is (stripped)
    -> 200, JSON:   a list of results, or an object whose "results" (or "items") is one;
                    each result an object with "title", "url" and "snippet" (or "content"),
                    rendered one per line as "- title <url>: snippet"; any other JSON is
                    returned compactly serialised
    -> 5xx / 429:   retried; other 4xx: an error line

Each item's block is ``"## <query or url>\\n<result or 'error: ...'>"``. Example::

    web_search = search_tool("http://127.0.0.1:8080/search", timeout=5,
                             allow_hosts=["127.0.0.1:8080"])
    await web_search(["weather in Paris", "population of Lyon"])

**Untrusted URLs.** The model picks the queries and, for ``fetch``, the URLs, so:

* only ``http``/``https`` URLs are fetched, on every hop;
* no connection is made to a loopback, private, link-local, cloud-metadata, multicast,
  unspecified or reserved address unless ``allow_hosts``/``allow_networks`` open it (see
  :mod:`~conveyor_integrations.tools.net_guard`). The check is made after DNS resolution, on
  the address actually connected to (resolve once, connect to that IP, Host header and SNI
  unchanged), so DNS rebinding cannot slip past it, and for every connection of every hop;
* redirects are followed here, not by httpx: at most ``max_redirects`` hops, each URL checked;
* configured headers go only where they were configured for: ``headers`` of
  :class:`HttpOptions` (and of ``search_tool``) only to the origin (scheme, host, port) of the
  URL the tool was given (the search endpoint), ``host_headers`` (``fetch_tool(headers=...)``)
  only to the named hosts; a redirect elsewhere drops them. No cookies are kept.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import httpx

from ..partial import partial_tool
from .net_guard import BlockedAddress, NetGuard, guarded_transport

if TYPE_CHECKING:
    from ..scheduler import Scheduler

__all__ = ["HttpOptions", "aclose_shared_client", "fetch_tool", "http_get_text", "render_json",
           "search_tool", "shared_client"]

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[NetGuard, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary())
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_GUARD = NetGuard()


def shared_client(guard: NetGuard | None = None) -> httpx.AsyncClient:
    """The running loop's ``httpx.AsyncClient`` for ``guard`` (made on first use, pooled).

    Its connections all go through the :class:`~.net_guard.NetGuard` (default: public
    addresses only); it follows no redirects and keeps no cookies. One pool per guard, so a
    connection opened under a wider allow-list is never reused under a narrower one.
    """
    guard = guard or _DEFAULT_GUARD
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(guard)
    if client is None or client.is_closed:
        limits = httpx.Limits(max_connections=64)
        jar = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        client = per_loop[guard] = httpx.AsyncClient(
            transport=guarded_transport(guard, limits), follow_redirects=False,
            trust_env=False, cookies=jar)
    return client


async def aclose_shared_client() -> None:
    """Close the running loop's shared clients (a later request opens new ones)."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


@dataclass(frozen=True)
class HttpOptions:
    """How each request is made: deadline, retries, size cap, headers, the address allow-list."""

    timeout: float = 10.0
    """Seconds one attempt may take in all (connect, send, redirects, read the capped body)."""
    retries: int = 2
    """Extra attempts after a connection error or a 5xx/429 answer."""
    backoff: float = 0.2
    """Seconds before the first retry; doubled for each further one."""
    max_bytes: int = 1_000_000
    """Body bytes read at most; the rest is not downloaded and the result says so."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent only to the origin (scheme, host, port) of the URL given to :func:`http_get_text`."""
    host_headers: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """``{"host" or "host:port": headers}``: each set sent only to requests to that host."""
    allow_hosts: Iterable[str] = ()
    """Hosts or ``host:port`` that may be reached even at a non-public address."""
    allow_networks: Iterable[str] = ()
    """CIDR networks (``"10.0.0.0/8"``) whose addresses may be reached."""
    max_redirects: int = 5
    """Redirect hops followed at most (each hop's URL and address checked)."""

    @property
    def guard(self) -> NetGuard:
        """The :class:`~.net_guard.NetGuard` of ``allow_hosts`` and ``allow_networks``."""
        return NetGuard(tuple(self.allow_hosts), tuple(self.allow_networks))


class _Retry(Exception):
    pass


class _Refused(Exception):
    pass


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _headers_for(url: httpx.URL, origin: tuple[str, str, int | None],
                 opts: HttpOptions) -> dict[str, str]:
    out: dict[str, str] = dict(opts.headers) if _origin(url) == origin else {}
    if opts.host_headers:
        host = url.host.lower()
        for key in (host, f"{host}:{url.port}" if url.port is not None else None):
            if key is not None and key in opts.host_headers:
                out.update(opts.host_headers[key])
    return out


def _check_url(url: httpx.URL) -> None:
    if url.scheme not in ("http", "https"):
        raise _Refused(f"only http:// and https:// URLs can be fetched, not {url.scheme}:")
    if not url.host:
        raise _Refused("the URL has no host")


async def _send(url: str, params: Mapping[str, str] | None,
                opts: HttpOptions) -> httpx.Response:
    """GET ``url``, following redirects by hand; the final response, open (caller closes)."""
    client = shared_client(opts.guard)
    target = httpx.URL(url).copy_merge_params(params) if params else httpx.URL(url)
    origin = _origin(target)
    for _hop in range(opts.max_redirects + 1):
        _check_url(target)
        request = client.build_request("GET", target, headers=_headers_for(target, origin, opts),
                                       timeout=opts.timeout)
        resp = await client.send(request, stream=True, follow_redirects=False)
        location = resp.headers.get("location")
        if resp.status_code not in _REDIRECT_STATUS or location is None:
            return resp
        await resp.aclose()
        target = target.join(location)
    raise _Refused(f"more than {opts.max_redirects} redirects")


async def _attempt(url: str, params: Mapping[str, str] | None, opts: HttpOptions) -> str:
    async with asyncio.timeout(opts.timeout):
        resp = await _send(url, params, opts)
        try:
            if resp.status_code in _RETRY_STATUS:
                raise _Retry(f"HTTP {resp.status_code} {resp.reason_phrase}")
            body, truncated = bytearray(), False
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > opts.max_bytes:
                    truncated = True
                    del body[opts.max_bytes:]
                    break
        finally:
            await resp.aclose()
        text = bytes(body).decode(resp.encoding or "utf-8", "replace")
        if resp.status_code >= 400:
            return f"error: HTTP {resp.status_code} {resp.reason_phrase}: {text[:200].strip()}"
        if truncated:
            return f"{text}\n[truncated at {opts.max_bytes} bytes]"
        if "json" in resp.headers.get("content-type", ""):
            try:
                return render_json(json.loads(text))
            except ValueError:
                pass
        return text.strip()


async def http_get_text(url: str, params: Mapping[str, str] | None = None,
                        opts: HttpOptions | None = None) -> str:
    """GET ``url`` with retries and caps; the body as text, or one ``error: ...`` line.

    Never raises for network or HTTP failures (only ``asyncio.CancelledError`` passes). A
    non-public address is refused unless ``opts`` allows it (see the module docstring)::

        opts = HttpOptions(allow_hosts=["127.0.0.1:8080"])
        text = await http_get_text("http://127.0.0.1:8080/search", {"q": "paris"}, opts)
    """
    opts = opts or HttpOptions()
    last = ""
    for attempt in range(opts.retries + 1):
        if attempt:
            await asyncio.sleep(opts.backoff * 2 ** (attempt - 1))
        try:
            return await _attempt(url, params, opts)
        except _Retry as exc:
            last = str(exc)
        except (BlockedAddress, _Refused) as exc:
            return f"error: refused: {exc}"
        except (TimeoutError, httpx.TimeoutException):
            return f"error: timed out after {opts.timeout:g} s"
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return f"error: invalid URL: {exc}"
        except httpx.HTTPError as exc:
            return f"error: {type(exc).__name__}: {exc}"
        except ValueError as exc:                   # a malformed URL or Location header
            return f"error: invalid URL: {exc}"
    return f"error: failed after {opts.retries + 1} attempts: {last}"


def render_json(data: Any) -> str:
    """Search results as lines ``- title <url>: snippet``; other JSON compactly serialised.

        >>> render_json({"results": [{"title": "Paris", "url": "u", "snippet": "capital"}]})
        '- Paris <u>: capital'
    """
    results = data
    if isinstance(data, dict):
        results = data.get("results", data.get("items"))
    if isinstance(results, list) and results and all(isinstance(r, dict) for r in results):
        lines = []
        for r in results:
            title, url = r.get("title", ""), r.get("url", r.get("link", ""))
            snippet = r.get("snippet", r.get("content", ""))
            lines.append(f"- {title} <{url}>: {snippet}".replace("\n", " "))
        return "\n".join(lines)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _named(fn: Callable[[list[str]], Awaitable[str]], name: str, items: str,
           scheduler: Scheduler | None) -> Callable[[list[str]], Awaitable[str]]:
    fn.__name__ = fn.__qualname__ = name
    return cast(Callable[[list[str]], Awaitable[str]],
                partial_tool(fn, items=items, combine="\n".join, scheduler=scheduler))


def search_tool(endpoint: str, *, name: str = "web_search", timeout: float = 10.0,
                retries: int = 2, max_bytes: int = 1_000_000, query_param: str = "q",
                params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                backoff: float = 0.2, allow_hosts: Iterable[str] = (),
                allow_networks: Iterable[str] = (),
                scheduler: Scheduler | None = None) -> Callable[[list[str]], Awaitable[str]]:
    """A ready ``web_search(queries: list[str]) -> str`` tool against ``endpoint``.

    Each query is sent as ``GET endpoint?<query_param>=<query>`` plus ``params`` (an API key,
    a result count...) as soon as it is decoded; see the module docstring for the contract.
    ``headers`` go to the endpoint's origin only. An endpoint at a non-public address (a local
    proxy) must be opened with ``allow_hosts`` (``"127.0.0.1:8080"``) or ``allow_networks``::

        web_search = search_tool("https://search.example/api", params={"count": "5"})
        text = await web_search(["conveyor partial execution"])
    """
    opts = HttpOptions(timeout=timeout, retries=retries, backoff=backoff, max_bytes=max_bytes,
                       headers=dict(headers or {}), allow_hosts=tuple(allow_hosts),
                       allow_networks=tuple(allow_networks))
    extra = dict(params or {})

    async def one(query: str) -> str:
        return f"## {query}\n" + await http_get_text(endpoint, {**extra, query_param: query}, opts)

    async def web_search(queries: list[str]) -> str:
        """Search the web for each query; return the results of each, query by query."""
        return "\n".join(await asyncio.gather(*(one(q) for q in queries)))

    return _named(web_search, name, "queries", scheduler)


def _per_host(headers: Mapping[str, Mapping[str, str]] | None) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for host, values in (headers or {}).items():
        if not isinstance(values, Mapping):
            raise TypeError("fetch_tool(headers=...) maps each host to its headers, e.g. "
                            '{"api.example.com": {"Authorization": "..."}}')
        out[host.lower()] = dict(values)
    return out


def fetch_tool(*, name: str = "fetch", timeout: float = 10.0, retries: int = 2,
               max_bytes: int = 1_000_000, headers: Mapping[str, Mapping[str, str]] | None = None,
               backoff: float = 0.2, allow_hosts: Iterable[str] = (),
               allow_networks: Iterable[str] = (), max_redirects: int = 5,
               scheduler: Scheduler | None = None) -> Callable[[list[str]], Awaitable[str]]:
    """A ready ``fetch(urls: list[str]) -> str`` tool: GET each http(s) URL as it is decoded.

    The model picks the URLs: non-public addresses are refused unless ``allow_hosts`` /
    ``allow_networks`` open them, and ``headers`` is ``{"host" or "host:port": {name: value}}``,
    each set sent only to its host (a redirect elsewhere drops it)::

        fetch = fetch_tool(max_bytes=200_000,
                           headers={"api.example.com": {"Authorization": "Bearer ..."}})
        text = await fetch(["https://example.org/"])
    """
    opts = HttpOptions(timeout=timeout, retries=retries, backoff=backoff, max_bytes=max_bytes,
                       host_headers=_per_host(headers), allow_hosts=tuple(allow_hosts),
                       allow_networks=tuple(allow_networks), max_redirects=max_redirects)

    async def one(url: str) -> str:
        if not url.startswith(("http://", "https://")):
            return f"## {url}\nerror: only http:// and https:// URLs can be fetched"
        return f"## {url}\n" + await http_get_text(url, None, opts)

    async def fetch(urls: list[str]) -> str:
        """Fetch each web page; return each page's text, URL by URL."""
        return "\n".join(await asyncio.gather(*(one(u) for u in urls)))

    return _named(fetch, name, "urls", scheduler)
