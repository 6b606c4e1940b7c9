"""The benchmark's timeline plot (a PNG for a mode pair and an aborted run) and local search server.

The server's latency is simulated; only lower bounds on waiting are checked, never upper ones.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conveyor_integrations.bench.plot import pack_lanes, plot_timeline
from conveyor_integrations.bench.records import RunRecord, Span
from conveyor_integrations.bench.search_server import SearchServer, fake_results
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.tools.search import aclose_shared_client, search_tool

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(mode: str, latency: float, spans: list[Span], ideal_s: float | None = None,
        aborted: bool = False) -> RunRecord:
    return RunRecord("search", "two_queries", mode, 50.0, "replay", latency_s=latency,
                     decode_s=spans[0].end, tokens=120, spans=spans, ideal_s=ideal_s,
                     aborted=aborted)


def assert_png(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_pack_lanes_separates_overlapping_spans() -> None:
    lanes = pack_lanes([Span("a", 0, 2), Span("b", 1, 3), Span("c", 2.5, 4), Span("d", 1.5, 2)])
    assert [[s.label for s in lane] for lane in lanes] == [["a", "c"], ["b"], ["d"]]


def test_plot_sequential_and_partial_pair(tmp_path: Path) -> None:
    seq = run("sequential", 7.41, [Span("decode", 0.0, 4.0, "decode"),
                                   Span("weather in Paris", 4.0, 5.7),
                                   Span("population of Lyon", 5.7, 7.41)])
    par = run("partial", 4.9, [Span("decode", 0.0, 4.0, "decode"),
                               Span("weather in Paris", 1.2, 2.9),
                               Span("population of Lyon and a very long query that is cut", 2.0,
                                    3.7),
                               Span("x", 2.5, 2.55), Span("distance", 3.2, 4.9)],
              ideal_s=4.6)
    out = plot_timeline(tmp_path / "sub" / "pair.png", "search / two_queries", [seq, par])
    assert out == tmp_path / "sub" / "pair.png"
    assert_png(out)


def test_plot_aborted_run(tmp_path: Path) -> None:
    aborted = run("partial", 1.6, [Span("decode", 0.0, 1.5, "decode"),
                                   Span("SyntaxError at line 3", 0.9, 1.6)], aborted=True)
    out = plot_timeline(str(tmp_path / "aborted.png"), "codegen / broken", [aborted])
    assert isinstance(out, Path)
    assert_png(out)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_server_same_query_same_answer_404_and_count() -> None:
    with SearchServer(latency_s=0.0) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/search")
        code1, body1 = get(server.url + "?q=weather+in+Paris")
        code2, body2 = get(server.url + "?q=weather+in+Paris")
        code3, body3 = get(server.url + "?q=Lyon")
        code4, _ = get(server.url.removesuffix("/search") + "/other")
        assert (code1, code2, code3, code4) == (200, 200, 200, 404)
        assert body1 == body2 and body1 != body3
        data = json.loads(body1)
        assert data == {"results": fake_results("weather in Paris")}
        assert len(data["results"]) == 3
        assert all(set(r) == {"title", "url", "snippet"} for r in data["results"])
        assert server.requests == 4


def test_server_waits_its_latency() -> None:
    with SearchServer(latency_s=0.3) as server:
        t0 = time.perf_counter()
        code, _ = get(server.url + "?q=slow")
        assert code == 200
        assert time.perf_counter() - t0 >= 0.3 - 0.01


async def test_works_with_search_tool(sched: Scheduler) -> None:
    with SearchServer(latency_s=0.2) as server:
        web_search = search_tool(server.url, scheduler=sched, allow_hosts=["127.0.0.1"])
        t0 = time.perf_counter()
        text = await web_search(["a", "b"])
        elapsed = time.perf_counter() - t0
        await aclose_shared_client()
        assert server.requests == 2
    assert elapsed >= 0.2 - 0.01
    blocks = text.split("\n## ")
    assert len(blocks) == 2 and blocks[0].startswith("## a\n") and blocks[1].startswith("b\n")
    for query, block in zip("ab", blocks, strict=True):
        lines = block.split("\n")[1:]
        assert lines == [f"- {r['title']} <{r['url']}>: {r['snippet']}"
                         for r in fake_results(query)]


def test_stop_leaves_no_thread_and_is_idempotent() -> None:
    before = set(threading.enumerate())
    server = SearchServer(latency_s=0.05).start()
    assert server.start() is server                     # already started: no second thread
    assert get(server.url + "?q=x")[0] == 200
    thread = server.thread
    assert thread is not None and thread.is_alive()
    server.stop()
    server.stop()
    assert not thread.is_alive()
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []
    with pytest.raises(RuntimeError):
        _ = server.url
