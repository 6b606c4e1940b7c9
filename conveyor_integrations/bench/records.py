"""What one benchmark run records: its latency, its decode, and the bars of its timeline.

All times are seconds since the request began. A run's ``spans`` are the bars a timeline shows:
one ``decode`` span, then one ``tool`` span per piece of tool work (a statement, a query, a
plan step, a field check) or per whole call when the tool ran on the complete call. Example::

    >>> run = RunRecord("codegen", "monte_carlo", "partial", 50.0, "replay", latency_s=4.2,
    ...                 decode_s=4.0, tokens=200,
    ...                 spans=[Span("decode", 0.0, 4.0, "decode"), Span("import numpy", 0.3, 0.4)])
    >>> run.tool_spans()[0].label
    'import numpy'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["MODES", "RunRecord", "Span"]

MODES = ("sequential", "complete_call", "partial")
"""The measured ways to run a transcript; ``ideal`` is computed from the partial run."""


@dataclass(slots=True)
class Span:
    """One bar of a timeline: ``label`` from ``start`` to ``end`` (seconds since the request)."""

    label: str
    start: float
    end: float
    kind: str = "tool"
    """``decode`` or ``tool``."""


@dataclass
class RunRecord:
    """One run of one transcript in one mode."""

    workload: str
    transcript: str
    mode: str
    """One of :data:`MODES`."""
    rate: float | None
    """Replay tokens/s; None on a real engine."""
    backend: str
    """``replay`` or ``vllm``."""
    latency_s: float
    """From the request to the last tool result (or the early abort's error) in hand."""
    decode_s: float
    """From the request to the end of decoding (earlier than the transcript's end on abort)."""
    tokens: int
    """Tokens (deltas) decoded."""
    spans: list[Span] = field(default_factory=list)
    ideal_s: float | None = None
    """The pipeline bound from this run's own piece times (partial runs only)."""
    aborted: bool = False
    run: int = 0
    """The run's number in its cell (the modes of one run decode the same transcript)."""
    incomplete: bool = False
    """Partial runs: some piece did not run early or ran again, so ``ideal_s`` is None."""
    result: str = ""
    """The tool results the framework got, joined (to check that every way agrees)."""

    def tool_spans(self) -> list[Span]:
        """The tool bars, in start order."""
        return sorted((s for s in self.spans if s.kind == "tool"), key=lambda s: s.start)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable, times rounded to microseconds."""
        d = asdict(self)
        for key in ("latency_s", "decode_s", "ideal_s"):
            if d[key] is not None:
                d[key] = round(d[key], 6)
        d["spans"] = [{**s, "start": round(s["start"], 6), "end": round(s["end"], 6)}
                      for s in d["spans"]]
        return d
