"""Replay: recorded model outputs paced at a fixed token rate. For tests and benchmarks.

A transcript is model text, or a list of OpenAI-style delta dicts. Text is cut into tokens of a
seeded random 1-8 characters (or by a tokenizer you pass); delta dicts have their ``content`` and
``function.arguments`` cut the same way, so a 3k-character argument arrives in ~700 fragments as
it would from a server. Tokens are released on an absolute schedule (``k / tokens_per_s`` after
the stream began), so pacing does not drift. Replay models decode speed; it is labelled as such
wherever its figures are reported.

Which transcript a stream gets: the next one, in the order the streams begin, unless its request
was reserved ahead with :meth:`Replay.reserve`, which gives the next transcripts to the named
requests in the order named, whatever order their streams then begin in. ``ChatConveyor``'s
``batch``/``abatch`` reserve them for their inputs, so a batch's answers follow its inputs:
``ChatConveyor(backend=Replay(["one", "two"])).batch(["a", "b"])`` answers ``one``, ``two``
although the two streams run concurrently. Example::

    >>> import asyncio
    >>> from conveyor_integrations.backends import Replay, ChatRequest
    >>> r = Replay(["first turn", "second turn"], tokens_per_s=1e6, seed=1)
    >>> async def text(request=None):
    ...     return "".join([d async for d in r.stream(request or ChatRequest([]))])
    >>> asyncio.run(text()), asyncio.run(text())
    ('first turn', 'second turn')
    >>> r = Replay(["one", "two", "three"], tokens_per_s=None)
    >>> a, b = ChatRequest([]), ChatRequest([])
    >>> r.reserve([a.request_id, b.request_id])
    >>> asyncio.run(text(b)), asyncio.run(text(a)), asyncio.run(text())   # b's stream first
    ('two', 'one', 'three')
"""

from __future__ import annotations

import asyncio
import copy
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeAlias

from .base import BackendError, ChatRequest, Delta

__all__ = ["Replay", "Transcript", "split_tokens"]

Transcript: TypeAlias = str | Sequence[dict[str, Any]]


def split_tokens(text: str, rng: random.Random) -> list[str]:
    """Cut ``text`` into pieces of 1-8 characters chosen by ``rng``."""
    out, i, n = [], 0, len(text)
    while i < n:
        k = rng.randint(1, 8)
        out.append(text[i:i + k])
        i += k
    return out


def _is_one_transcript(turns: Any) -> bool:
    return isinstance(turns, str) or (
        isinstance(turns, Sequence) and len(turns) > 0 and all(isinstance(d, dict) for d in turns))


class Replay:
    """Replays one transcript per ``stream()`` call at ``tokens_per_s``.

    Transcripts go out in the order the streams begin, except to requests reserved with
    :meth:`reserve` (a batch's, in input order: see the module's docstring). ``cycle=True``
    starts over after the last transcript; without it a call past the last raises
    :class:`BackendError`. ``tokens_per_s=None`` (or ``float("inf")``) replays as fast as
    possible. ``tool_format`` defaults to ``"openai"`` for delta transcripts and ``"hermes"``
    for text.
    """

    def __init__(
        self,
        turns: Transcript | Sequence[Transcript],
        tokens_per_s: float | None = 50.0,
        seed: int = 0,
        *,
        tokenizer: Callable[[str], list[str]] | None = None,
        tool_format: str | None = None,
        cycle: bool = False,
    ) -> None:
        self.turns: list[Transcript] = (
            [turns] if _is_one_transcript(turns) else list(turns))  # type: ignore[list-item,arg-type]
        if not self.turns:
            raise ValueError("Replay needs at least one transcript")
        self.tokens_per_s = tokens_per_s
        self.cycle = cycle
        self._rng = random.Random(seed)
        self._tokenizer = tokenizer
        self._next = 0
        self._calls = 0
        self._reserved: dict[str, tuple[int | None, int]] = {}
        self._lock = threading.Lock()          # reserve() is called from the caller's thread
        self.requests: list[ChatRequest] = []
        """Every request received, in the order their streams began (tests inspect them)."""
        self.emitted: list[int] = []
        """Tokens emitted per stream (in the order of ``requests``); smaller than the
        transcript's when a stream was closed early."""
        first = self.turns[0]
        self.default_tool_format = tool_format or ("hermes" if isinstance(first, str) else "openai")

    def _split(self, text: str) -> list[str]:
        return self._tokenizer(text) if self._tokenizer else split_tokens(text, self._rng)

    def tokens(self, transcript: Transcript) -> list[Delta]:
        """The deltas one transcript is replayed as."""
        if isinstance(transcript, str):
            return list(self._split(transcript))
        out: list[Delta] = []
        for delta in transcript:
            out.extend(self._split_delta(delta))
        return out

    def _split_delta(self, delta: dict[str, Any]) -> list[Delta]:
        calls = delta.get("tool_calls") or []
        content = delta.get("content")
        extra = {k: v for k, v in delta.items() if k not in ("tool_calls", "content")}
        out: list[Delta] = []
        if content:
            out.extend({"content": piece} for piece in self._split(content))
        for call in calls:
            fn = call.get("function") or {}
            args = fn.get("arguments") or ""
            pieces = self._split(args) or [""]
            for i, piece in enumerate(pieces):
                c = copy.deepcopy(call) if i == 0 else {"index": call.get("index", 0),
                                                        "function": {}}
                c.setdefault("function", {})["arguments"] = piece
                out.append({"tool_calls": [c]})
        if extra:
            if out:
                out[-1] = {**out[-1], **extra} if isinstance(out[-1], dict) else out[-1]
            else:
                out.append(dict(extra))
        return out or [dict(delta)]

    def _advance(self) -> tuple[int | None, int]:
        """The next transcript's index (None: none left) and the call's number (from 1)."""
        self._calls += 1
        if self._next >= len(self.turns):
            if not self.cycle:
                return None, self._calls
            self._next = 0
        self._next += 1
        return self._next - 1, self._calls

    def reserve(self, request_ids: Sequence[str]) -> None:
        """Give the next ``len(request_ids)`` transcripts to these requests, in this order.

        The request whose ``request_id`` is ``request_ids[i]`` gets the i-th of them whenever
        its stream begins; streams of other requests get the transcripts after them. A reserved
        request that never streams leaves its transcript unused."""
        with self._lock:
            for request_id in request_ids:
                self._reserved[request_id] = self._advance()

    def _take(self, request: ChatRequest) -> tuple[list[Delta], int]:
        """The request's transcript's deltas and its slot in ``emitted``; records the request."""
        with self._lock:
            reserved = self._reserved.pop(request.request_id, None)
            index, call = reserved if reserved is not None else self._advance()
            if index is None:
                raise BackendError(f"{type(self).__name__} has no transcript left for call "
                                   f"{call} (it was given {len(self.turns)})")
            self.requests.append(request)
            self.emitted.append(0)
            return self.tokens(self.turns[index]), len(self.emitted) - 1

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Replay the next transcript, paced."""
        deltas, slot = self._take(request)
        rate = self.tokens_per_s
        t0 = time.perf_counter()
        for k, delta in enumerate(deltas):
            if rate is None or rate == float("inf"):
                await asyncio.sleep(0)
            else:
                wait = t0 + (k + 1) / rate - time.perf_counter()
                await asyncio.sleep(max(0, wait))
            self.emitted[slot] += 1
            yield delta

    async def aclose(self) -> None:
        """Nothing to release."""
        return
