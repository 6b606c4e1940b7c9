"""What a recorded run would have taken with complete-call dispatch, partial execution and at
the pipeline bound.

Each turn's message is fed through its parser at its recorded chunk times (or, where the trace
kept only the final message, decoded at the turn's own rate: ``output_tokens`` over its
duration, or the rate given), which gives when each call began, when each field, item, line or
statement became final and when the call was complete. Each recorded tool run is then moved:

- ``complete_call``: the tool starts when its call is complete: ``done + t``;
- ``partial``: as its strategy (:mod:`.strategy`) allows: ``start_on`` once its fields are
  final (``final + t``; ``done + t`` when the call's other fields void the early run, as the
  library then runs the tool again); ``stream``/``items`` split the recorded tool time over the pieces
  (by characters for lines and statements, evenly for items; or as the trace timed each piece)
  and run them one after another as
  each becomes final, ``f_k = max(d_k, f_{k-1}) + t_k`` (DESIGN's pipeline formula), ending no
  earlier than the complete call;
- ``bound``: the tool's work starting the moment its call began, ``begin + t``: what no
  strategy can beat on this message (the paper's ``max(decode, tool)`` per call).

A turn ends at the latest of its decode end and its calls' ends; recorded tool runs that no call
of the message explains stay where they were. A run's estimate in a mode is its recorded time
less the sum of its turns' savings (the next model request starts that much sooner). The
library's own cost per piece (0.1-0.4 % of task time in BENCHMARKS.md) is not added. Written by
hand: this is the benchmark's pipeline bound applied to recorded times, which no tracing tool
computes. Example::

    >>> from .model import RecordedRun, RecordedTool, RecordedTurn
    >>> text = '<tool_call>{"name": "search", "arguments": {"query": "paris", "k": 3}}</tool_call>'
    >>> turn = RecordedTurn(0.0, 2.0, text=text, tool_format="hermes", output_tokens=20,
    ...                     tools=[RecordedTool("search", 2.0, 3.0)])
    >>> est = estimate_run(RecordedRun("r", "chatlog", [turn]),
    ...                    {"search": Strategy("start_on", ("query",), defaults=(("k", "3"),))})
    >>> est.recorded_s, est.total("complete_call"), round(est.total("partial"), 2)
    (3.0, 3.0, 2.5)
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..events import CallDone, CallMalformed, CallStarted, FieldDone, ItemDone, TextChunk
from ..parsing import get_parser
from .model import RecordedRun, RecordedTool, RecordedTurn
from .strategy import Strategy

__all__ = ["MODES", "CallEstimate", "RunEstimate", "TurnEstimate", "estimate_run"]

MODES = ("complete_call", "partial", "bound")


@dataclass
class CallEstimate:
    """One call of one turn, and where its recorded tool run would have ended in each mode."""

    name: str
    call_id: str
    strategy: str
    tool_s: float
    began: float
    done: float
    pieces: int
    ends: dict[str, float] = field(default_factory=dict)
    """Mode -> when the tool's result would have been ready."""


@dataclass
class TurnEstimate:
    """One turn: its decode end, recorded end and estimated end per mode."""

    index: int
    start: float
    decode_end: float
    recorded_end: float
    timed: str
    """``chunks`` (recorded arrival times) or ``N tok/s`` (decoded at that rate)."""
    ends: dict[str, float] = field(default_factory=dict)
    calls: list[CallEstimate] = field(default_factory=list)


@dataclass
class RunEstimate:
    """One recorded run's estimate (seconds)."""

    name: str
    source: str
    recorded_s: float
    turns: list[TurnEstimate]
    notes: list[str] = field(default_factory=list)
    measured: dict[str, float] = field(default_factory=dict)
    """The recording's own measurement beside it (see :attr:`.RecordedRun.measured`)."""

    def saved(self, mode: str) -> float:
        """Seconds ``mode`` saves on the whole run."""
        return round(sum(max(0.0, t.recorded_end - t.ends[mode]) for t in self.turns), 6)

    def total(self, mode: str) -> float:
        """The run's task time in ``mode`` (``recorded`` for the run as it was)."""
        return self.recorded_s if mode == "recorded" else round(self.recorded_s
                                                                - self.saved(mode), 6)

    def tool_s(self) -> float:
        """The recorded tool time of the run's calls."""
        return round(sum(c.tool_s for t in self.turns for c in t.calls), 6)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable, with each mode's total and saving."""
        d = asdict(self)
        d["totals"] = {m: self.total(m) for m in ("recorded", *MODES)}
        d["saved"] = {m: self.saved(m) for m in MODES}
        return d


@dataclass
class _Call:
    name: str = ""
    id: str = ""
    began: float = 0.0
    done: float | None = None
    args: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, float] = field(default_factory=dict)
    chunks: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    items: dict[str, list[float]] = field(default_factory=dict)
    malformed: str | None = None


def _pieces(n_chars: int, n: int) -> list[int]:
    n = max(1, min(n, n_chars))
    base, extra = divmod(n_chars, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _cut(text: str, tokens: int | None, rng: random.Random) -> list[str]:
    if not text:
        return []
    if tokens:
        sizes, out, i = _pieces(len(text), tokens), [], 0
        for k in sizes:
            out.append(text[i:i + k])
            i += k
        return out
    from ..backends.replay import split_tokens
    return split_tokens(text, rng)


def _synthesized(turn: RecordedTurn, rng: random.Random) -> tuple[list[Any], str]:
    """The final message as deltas a client would have received, and their format."""
    if turn.tool_calls:
        n_chars = len(turn.text or "") + sum(len(_arguments(c)) for c in turn.tool_calls)
        per = max(1.0, n_chars / turn.output_tokens) if turn.output_tokens else None

        def cut(s: str) -> list[str]:
            return _cut(s, max(1, round(len(s) / per)) if per else None, rng)

        deltas: list[Any] = [{"content": p} for p in cut(turn.text or "")]
        for i, c in enumerate(turn.tool_calls):
            deltas.append({"tool_calls": [{"index": i, "id": str(c.get("id") or f"call_{i}"),
                                           "type": "function", "function": {
                                               "name": c["name"], "arguments": ""}}]})
            deltas += [{"tool_calls": [{"index": i, "function": {"arguments": p}}]}
                       for p in cut(_arguments(c))]
        return deltas, "openai"
    return list(_cut(turn.text or "", turn.output_tokens, rng)), turn.tool_format or "hermes"


def _arguments(call: Mapping[str, Any]) -> str:
    args = call.get("arguments")
    return args if isinstance(args, str) else json.dumps(args or {})


def _timed(turn: RecordedTurn, rate: float | None, rng: random.Random
           ) -> tuple[list[tuple[float, Any]], str, str]:
    if turn.chunks:
        fmt = turn.tool_format or ("openai" if isinstance(turn.chunks[0][1], dict) else "hermes")
        return list(turn.chunks), fmt, "chunks"
    deltas, fmt = _synthesized(turn, rng)
    n = max(1, len(deltas))
    if rate is None:
        step = max(0.0, turn.end - turn.start) / n
        times = [turn.start + (i + 1) * step for i in range(n)]
        how = f"{n / max(1e-9, turn.end - turn.start):.0f} tok/s"
    else:
        times = [turn.end - (n - 1 - i) / rate for i in range(n)]
        how = f"{rate:g} tok/s"
    return list(zip(times, deltas)), fmt, how


def _parse(timed: list[tuple[float, Any]], fmt: str, streams: dict[str, dict[str, str]]
           ) -> dict[int, _Call]:
    parser = get_parser(fmt, streams=streams)
    calls: dict[int, _Call] = {}
    last = timed[-1][0] if timed else 0.0
    batches = [(t, parser.feed(d)) for t, d in timed] + [(last, parser.close())]
    for t, events in batches:
        for ev in events:
            if isinstance(ev, CallStarted):
                calls[ev.index] = _Call(ev.name, ev.id, t)
                continue
            c = calls.get(getattr(ev, "index", -1))
            if c is None:
                continue
            if isinstance(ev, FieldDone) and len(ev.path) == 1:
                c.fields.setdefault(str(ev.path[0]), t)
            elif isinstance(ev, TextChunk) and len(ev.path) == 1:
                c.chunks.setdefault(str(ev.path[0]), []).append((t, len(ev.text)))
            elif isinstance(ev, ItemDone) and len(ev.path) == 1:
                c.items.setdefault(str(ev.path[0]), []).append(t)
            elif isinstance(ev, CallDone):
                c.done, c.args, c.id = t, dict(ev.args), ev.id
            elif isinstance(ev, CallMalformed):
                c.malformed = ev.reason
    return calls


def _partial_end(c: _Call, done: float, s: Strategy, t: float,
                 piece_s: list[float] | None = None) -> tuple[float, int]:
    key = s.fields[0] if s.fields else ""
    if s.kind == "start_on":
        if all(f in c.fields for f in s.fields) and not s.reruns(c.args):
            return max([c.began] + [c.fields[f] for f in s.fields]) + t, 1
        return done + t, 1
    if s.kind == "stream" and c.chunks.get(key):
        chunks = c.chunks[key]
        total = sum(n for _, n in chunks) or 1
        work = [(at, t * n / total) for at, n in chunks]
    elif s.kind == "items" and c.items.get(key):
        work = [(at, t / len(c.items[key])) for at in c.items[key]]
    else:
        return done + t, 1
    if piece_s is not None and len(piece_s) == len(work):
        work = [(at, w) for (at, _), w in zip(work, piece_s)]
    f = 0.0
    for at, w in work:
        f = max(at, f) + w
    return max(f, done), len(work)


def _pair(calls: list[_Call], tools: list[RecordedTool]) -> list[tuple[_Call, RecordedTool]]:
    free = list(tools)
    out: list[tuple[_Call, RecordedTool]] = []
    for c in calls:                         # by call id first, then by name in order
        hit = next((x for x in free if x.call_id and x.call_id == c.id), None)
        if hit is None:
            hit = next((x for x in free if x.name == c.name
                        and not (x.call_id and any(x.call_id == o.id for o in calls))), None)
        if hit is not None:
            free.remove(hit)
            out.append((c, hit))
    return out


def _turn(i: int, turn: RecordedTurn, strategies: Mapping[str, Strategy], rate: float | None,
          rng: random.Random, notes: list[str]) -> TurnEstimate:
    timed, fmt, how = _timed(turn, rate, rng)
    streams = {n: s.streams() for n, s in strategies.items() if s.streams()}
    calls = [c for _, c in sorted(_parse(timed, fmt, streams).items())]
    for c in calls:
        if c.malformed is not None:
            notes.append(f"turn {i}: call {c.name!r} is malformed in {fmt} ({c.malformed}); "
                         "its tool run is left where it was")
    decode_end = max([turn.end] + [t for t, _ in timed[-1:]])
    recorded_end = max([decode_end] + [x.end for x in turn.tools])
    est = TurnEstimate(i, turn.start, decode_end, recorded_end, how)
    pairs = _pair([c for c in calls if c.done is not None and c.malformed is None], turn.tools)
    paired = {id(x) for _, x in pairs}
    left = [x.end for x in turn.tools if id(x) not in paired]
    if left:
        notes.append(f"turn {i}: {len(left)} tool run(s) answer no call decoded from the "
                     "message; left where they were")
    for mode in MODES:
        est.ends[mode] = max([decode_end] + left)
    for c, x in pairs:
        assert c.done is not None
        s = strategies.get(c.name) or Strategy.guess(c.args)
        t = x.duration_s
        partial, n = _partial_end(c, c.done, s, t, x.piece_s)
        ce = CallEstimate(c.name, c.id, s.describe(), t, c.began, c.done, n,
                          {"complete_call": c.done + t, "partial": min(partial, c.done + t),
                           "bound": c.began + t})
        est.calls.append(ce)
        for mode in MODES:
            est.ends[mode] = max(est.ends[mode], ce.ends[mode])
    return est


def estimate_run(run: RecordedRun, strategies: Mapping[str, Strategy] | None = None, *,
                 rate: float | None = None, seed: int = 0) -> RunEstimate:
    """The estimate of one run (see the module's docstring). ``strategies`` by tool name
    (others are guessed per call); ``rate`` (tokens/s) decodes messages whose chunk times the
    trace lacks (default: each turn's own rate)."""
    rng = random.Random(seed)
    notes: list[str] = []
    chosen = {**run.strategies, **(strategies or {})}
    turns = [_turn(i, t, chosen, rate, rng, notes) for i, t in enumerate(run.turns)]
    return RunEstimate(run.name, run.source, run.duration_s, turns, notes, dict(run.measured))
