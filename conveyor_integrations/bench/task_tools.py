"""The tool kinds an agent task holds, and how to tell that each call's work ran exactly once.

A kind is a tool of one of the single-message workloads (``web_search`` of Search, ``run_python``
of CodeGen, ``run_sql`` of SQL, ``run_plan`` of Planning) or ``fetch_pages``, which fetches each
URL from the local search server (it stands for the web, with the same latency) as soon as the
URL is final. Each kind records its work into a :class:`~.workload_base.Trace` of its own, and
gives its pieces to the pipeline bound exactly as its workload does. ``expected(args)`` is the
work one call asks for and ``observed(trace)`` the work that ran, so a test can check that every
call's work ran once, in every mode. Example::

    >>> KINDS["web_search"].expected({"queries": ["a", "b"]})
    Counter({'a': 1, 'b': 1})
    >>> KINDS["run_python"].expected({"code": "print(1)"})
    Counter({'run_python': 1})
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..events import ItemDone
from ..speculation import Prediction
from ..tools.search import http_get_text
from .workload_base import Env, Mark, Piece, Pieces, ToolPart, Trace, Workload, marks_of
from .workloads import _HTTP, WORKLOADS

__all__ = ["KINDS", "Fetch", "Kind", "fetch_top_results"]


class Fetch(Workload):
    """``fetch_pages(urls)``: each page from the local server's ``/page``, as its URL closes."""

    def parts(self, env: Env, trace: Trace) -> list[ToolPart]:
        page = env.search_url.rsplit("/", 1)[0] + "/page"

        async def one(url: str) -> str:
            return f"## {url}\n" + await http_get_text(page, {"url": url}, _HTTP)

        traced_one = trace.traced(lambda url: url, one)

        async def fetch_pages(urls: list[str]) -> str:
            return "\n".join(await asyncio.gather(*(traced_one(u) for u in urls)))

        return [ToolPart("fetch_pages", "Fetch each web page and return its text.", fetch_pages,
                         {"items": "urls", "combine": "\n".join})]

    def pieces(self, trace: Trace, marks: list[Mark]) -> Pieces:
        spans = {label: (s, e) for label, s, e in trace.spans}
        items = marks_of(marks, ItemDone, ("urls",))
        pieces = [Piece(ev.value, t, *spans[ev.value]) for t, ev in items if ev.value in spans]
        return pieces, None, len(pieces) == len(items) == len(trace.spans)


@dataclass(frozen=True)
class Kind:
    """One tool kind: the workload that makes it, and the work a call asks for and ran."""

    name: str
    workload: Workload
    expected: Callable[[dict[str, Any]], Counter[str]]
    """The units of work one call with these arguments asks for."""
    observed: Callable[[Trace], Counter[str]]
    """The units of work that ran, from the kind's trace of one turn."""
    executed: bool = False
    """Its pieces come from its partial execution (none: it ran as a whole call)."""
    speculative: Mapping[str, Any] = field(default_factory=dict)
    """The ``partial_tool`` keywords it adds in speculative mode (``read_only``, ``follow_up``)."""

    def part(self, env: Env, trace: Trace) -> ToolPart:
        """This kind's tool, recording into ``trace``."""
        return next(p for p in self.workload.parts(env, trace) if p.name == self.name)

    def pieces(self, trace: Trace, marks: list[Mark]) -> Pieces:
        """The turn's pieces of this kind (see :data:`~.workload_base.Pieces`)."""
        if not trace.spans and not trace.executions:
            return [], None, True
        if self.executed and not trace.executions:
            return [], None, False
        return self.workload.pieces(trace, marks)


def _labels(trace: Trace) -> Counter[str]:
    return Counter(label for label, _, _ in trace.spans)


def _whole(name: str, label: str) -> Callable[[Trace], Counter[str]]:
    """A program or script: one execution per call, run early or as the whole call."""
    def observed(trace: Trace) -> Counter[str]:
        runs = len(trace.executions) + sum(1 for lb, _, _ in trace.spans if lb == label)
        return Counter({name: runs}) if runs else Counter()
    return observed


_STEP = re.compile(r"^\s*\d+\s*\.", re.MULTILINE)
_RESULT_URL = re.compile(r"https://search\.example/[0-9a-f]{12}")


def fetch_top_results(args: dict[str, Any], result: str) -> list[Prediction]:
    """``web_search``'s follow-up: fetch every result it returned (the search server gives the
    top three of each query), one prediction per URL (one item of ``fetch_pages``).

        >>> fetch_top_results({}, "## q\\n https://search.example/0123456789ab ...")
        [Prediction(tool='fetch_pages', args={'urls': ['https://search.example/0123456789ab']})]
    """
    urls = dict.fromkeys(_RESULT_URL.findall(result))
    return [Prediction("fetch_pages", {"urls": [u]}) for u in urls]


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("web_search", WORKLOADS["search"], lambda a: Counter(a["queries"]), _labels,
         speculative={"read_only": True, "follow_up": fetch_top_results}),
    Kind("fetch_pages", Fetch("fetch", "Fetch", {}), lambda a: Counter(a["urls"]), _labels,
         speculative={"read_only": True}),
    Kind("run_python", WORKLOADS["codegen"], lambda a: Counter({"run_python": 1}),
         _whole("run_python", "run_python (whole program)"), executed=True),
    Kind("run_sql", WORKLOADS["sql"], lambda a: Counter({"run_sql": 1}),
         _whole("run_sql", "run_sql (whole script)"), executed=True),
    Kind("run_plan", WORKLOADS["planning"],
         lambda a: Counter({"step": len(_STEP.findall(a["plan"]))}),
         lambda t: Counter({"step": len(t.spans)}) if t.spans else Counter(), executed=True),
)}
"""The tool kinds by tool name."""
