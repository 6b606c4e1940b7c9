"""Fault injection for reliability tests: a replay backend that fails, stalls or sends junk,
and tools that raise, hang, or are slow to cancel. Every choice comes from ``random.Random(seed)``,
so a failing run is reproduced by its seed. Example::

    >>> import asyncio
    >>> from conveyor_integrations.backends import ChatRequest, BackendError
    >>> r = FaultyReplay("hello world, this is a transcript", seed=3, fail_at=True)
    >>> async def drain():
    ...     out = []
    ...     try:
    ...         async for d in r.stream(ChatRequest([])):
    ...             out.append(d)
    ...     except BackendError:
    ...         return "failed after %d deltas" % len(out)
    >>> asyncio.run(drain()).startswith("failed after")
    True
    >>> r.injected["fail"]
    1
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from .base import BackendError, ChatRequest, Delta
from .replay import Replay, Transcript

__all__ = ["FaultyReplay", "ToolFault", "hanging_tool", "raising_tool", "slow_cancel_tool"]

_JUNK_TEXT = ('{"name": ', '"}}', "\x00\x01\ufffd", "</tool_call>", "<tool_call>{", "]]]",
              '{"arguments": {"', "\\u12", "null,", '": : :')


class FaultyReplay(Replay):
    """A :class:`Replay` that injects faults into each stream, chosen by a seeded RNG.

    ``fail_at``: ``True`` raises :class:`BackendError` after a random token; an ``int`` after that
    many tokens. ``stall_s``: pause that long once, after a random token. ``garbage``: insert that
    many junk deltas (random bytes decoded as text, broken JSON or stray tags) at random points.
    ``injected`` counts the faults actually injected, by kind (``fail``, ``stall``, ``garbage``).
    Defaults to ``tokens_per_s=None`` (as fast as possible) and ``cycle=True``.
    """

    def __init__(
        self,
        turns: Transcript | Sequence[Transcript],
        tokens_per_s: float | None = None,
        seed: int = 0,
        *,
        fail_at: bool | int = False,
        stall_s: float = 0.0,
        garbage: int = 0,
        cycle: bool = True,
        tool_format: str | None = None,
    ) -> None:
        super().__init__(turns, tokens_per_s, seed, cycle=cycle, tool_format=tool_format)
        self.fail_at = fail_at
        self.stall_s = stall_s
        self.garbage = garbage
        self.fault_rng = random.Random(seed ^ 0x5EED)
        self.injected: Counter[str] = Counter()
        """Faults injected so far, by kind."""
        self.fail_points: list[int | None] = []
        """Per stream, the token count after which it failed (None: it did not)."""

    def _junk(self, as_dict: bool) -> Delta:
        rng = self.fault_rng
        if rng.random() < 0.5:
            text = bytes(rng.randrange(256) for _ in range(rng.randint(1, 12))).decode(
                "utf-8", errors="replace")
        else:
            text = rng.choice(_JUNK_TEXT)
        if as_dict:
            if rng.random() < 0.5:
                return {"content": text}
            return {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}
        return text

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Replay the next transcript with this stream's faults."""
        rng = self.fault_rng
        deltas, slot = self._take(request)
        n = len(deltas)
        as_dict = bool(deltas) and isinstance(deltas[0], dict)
        for _ in range(self.garbage):
            deltas.insert(rng.randint(0, len(deltas)), self._junk(as_dict))
            self.injected["garbage"] += 1
        fail: int | None = None
        if self.fail_at is True:
            fail = rng.randint(0, max(0, n - 1))
        elif self.fail_at is not False:
            fail = int(self.fail_at)
        stall = rng.randint(0, max(0, len(deltas) - 1)) if self.stall_s > 0 else None
        self.fail_points.append(fail)
        for k, delta in enumerate(deltas):
            if fail is not None and k == fail:
                self.injected["fail"] += 1
                raise BackendError(f"injected backend failure after {k} tokens")
            if k == stall:
                self.injected["stall"] += 1
                await asyncio.sleep(self.stall_s)
            self.emitted[slot] += 1
            yield delta
            if self.tokens_per_s is None:
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(1.0 / self.tokens_per_s)


class ToolFault(RuntimeError):
    """The error :func:`raising_tool` raises."""


def raising_tool(message: str = "injected tool failure") -> Callable[..., str]:
    """A tool ``lookup(key, note="")`` that always raises :class:`ToolFault`."""

    def lookup(key: str, note: str = "") -> str:
        """Look a key up (always fails)."""
        raise ToolFault(f"{message}: {key}")

    return lookup


def hanging_tool(hang_s: float = 30.0, *, is_async: bool = True,
                 release: threading.Event | None = None) -> Callable[..., Any]:
    """A tool ``lookup(key, note="")`` that hangs ``hang_s`` (give it a shorter ``timeout``).

    The async form sleeps and is cancellable; the sync form blocks its pool thread until
    ``release`` is set or ``hang_s`` passes (threads cannot be cancelled).
    """
    if is_async:
        async def alookup(key: str, note: str = "") -> str:
            """Look a key up (hangs)."""
            await asyncio.sleep(hang_s)
            return key

        alookup.__name__ = "lookup"
        return alookup
    gate = release or threading.Event()

    def lookup(key: str, note: str = "") -> str:
        """Look a key up (hangs)."""
        gate.wait(hang_s)
        return key

    return lookup


def slow_cancel_tool(cancel_s: float = 0.2, work_s: float = 30.0,
                     on_cancel: Callable[[], object] | None = None
                     ) -> Callable[..., Awaitable[str]]:
    """An async tool ``lookup(key, note="")`` whose cancellation handler sleeps ``cancel_s``
    before it re-raises (a tool that needs time to clean up); ``on_cancel`` is called after."""

    async def lookup(key: str, note: str = "") -> str:
        """Look a key up (slow to cancel)."""
        try:
            await asyncio.sleep(work_s)
        except asyncio.CancelledError:
            await asyncio.sleep(cancel_s)
            if on_cancel is not None:
                on_cancel()
            raise
        return key

    return lookup
