"""The Search workload: web search and page fetches that start as soon as each query is final.

``search_tool(endpoint)`` makes ``web_search(queries: list[str]) -> str`` and ``fetch_tool()``
makes ``fetch(urls: list[str]) -> str``. Both are decorated with ``partial_tool(items=...)``: the
core's :class:`~conveyor_integrations.strategies.EachItem` sends one request per list element the
moment the parser reports it final (``ItemDone``), all of them concurrently, while the model is
still decoding the rest of the call. The complete call gives exactly the same text, because the
tool itself is "one block per item, joined with a newline", which is how ``EachItem`` joins the
per-item results.

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

    web_search = search_tool("http://127.0.0.1:8080/search", timeout=5)
    await web_search(["weather in Paris", "population of Lyon"])
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import httpx

from ..partial import partial_tool

if TYPE_CHECKING:
    from ..scheduler import Scheduler

__all__ = ["HttpOptions", "aclose_shared_client", "fetch_tool", "http_get_text", "render_json",
           "search_tool", "shared_client"]

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary())
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def shared_client() -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` of the running event loop (made on first use, pooled)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = httpx.AsyncClient(
            follow_redirects=True, limits=httpx.Limits(max_connections=64))
    return client


async def aclose_shared_client() -> None:
    """Close the running loop's shared client (a later request opens a new one)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


@dataclass(frozen=True)
class HttpOptions:
    """How each request is made: per-attempt deadline, retries, backoff and size cap."""

    timeout: float = 10.0
    """Seconds one attempt may take in all (connect, send, read the capped body)."""
    retries: int = 2
    """Extra attempts after a connection error or a 5xx/429 answer."""
    backoff: float = 0.2
    """Seconds before the first retry; doubled for each further one."""
    max_bytes: int = 1_000_000
    """Body bytes read at most; the rest is not downloaded and the result says so."""
    headers: Mapping[str, str] = field(default_factory=dict)


class _Retry(Exception):
    pass


async def _attempt(url: str, params: Mapping[str, str] | None, opts: HttpOptions) -> str:
    client = shared_client()
    async with asyncio.timeout(opts.timeout):
        async with client.stream("GET", url, params=params, headers=dict(opts.headers),
                                 timeout=opts.timeout) as resp:
            if resp.status_code in _RETRY_STATUS:
                raise _Retry(f"HTTP {resp.status_code} {resp.reason_phrase}")
            body, truncated = bytearray(), False
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > opts.max_bytes:
                    truncated = True
                    del body[opts.max_bytes:]
                    break
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

    Never raises for network or HTTP failures (only ``asyncio.CancelledError`` passes)::

        text = await http_get_text("http://127.0.0.1:8080/search", {"q": "paris"})
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
        except (TimeoutError, httpx.TimeoutException):
            return f"error: timed out after {opts.timeout:g} s"
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        except httpx.InvalidURL as exc:
            return f"error: invalid URL: {exc}"
        except httpx.HTTPError as exc:
            return f"error: {type(exc).__name__}: {exc}"
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
                partial_tool(fn, items=items, scheduler=scheduler))


def search_tool(endpoint: str, *, name: str = "web_search", timeout: float = 10.0,
                retries: int = 2, max_bytes: int = 1_000_000, query_param: str = "q",
                params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                backoff: float = 0.2,
                scheduler: Scheduler | None = None) -> Callable[[list[str]], Awaitable[str]]:
    """A ready ``web_search(queries: list[str]) -> str`` tool against ``endpoint``.

    Each query is sent as ``GET endpoint?<query_param>=<query>`` plus ``params`` (an API key,
    a result count...) as soon as it is decoded; see the module docstring for the contract::

        web_search = search_tool("https://search.example/api", params={"count": "5"})
        text = await web_search(["conveyor partial execution"])
    """
    opts = HttpOptions(timeout=timeout, retries=retries, backoff=backoff, max_bytes=max_bytes,
                       headers=dict(headers or {}))
    extra = dict(params or {})

    async def one(query: str) -> str:
        return f"## {query}\n" + await http_get_text(endpoint, {**extra, query_param: query}, opts)

    async def web_search(queries: list[str]) -> str:
        """Search the web for each query; return the results of each, query by query."""
        return "\n".join(await asyncio.gather(*(one(q) for q in queries)))

    return _named(web_search, name, "queries", scheduler)


def fetch_tool(*, name: str = "fetch", timeout: float = 10.0, retries: int = 2,
               max_bytes: int = 1_000_000, headers: Mapping[str, str] | None = None,
               backoff: float = 0.2,
               scheduler: Scheduler | None = None) -> Callable[[list[str]], Awaitable[str]]:
    """A ready ``fetch(urls: list[str]) -> str`` tool: GET each http(s) URL as it is decoded::

        fetch = fetch_tool(max_bytes=200_000)
        text = await fetch(["https://example.org/"])
    """
    opts = HttpOptions(timeout=timeout, retries=retries, backoff=backoff, max_bytes=max_bytes,
                       headers=dict(headers or {}))

    async def one(url: str) -> str:
        if not url.startswith(("http://", "https://")):
            return f"## {url}\nerror: only http:// and https:// URLs can be fetched"
        return f"## {url}\n" + await http_get_text(url, None, opts)

    async def fetch(urls: list[str]) -> str:
        """Fetch each web page; return each page's text, URL by URL."""
        return "\n".join(await asyncio.gather(*(one(u) for u in urls)))

    return _named(fetch, name, "urls", scheduler)
