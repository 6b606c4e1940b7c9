"""Per-call timings: when a call was seen, its arguments final, its tool started and ended.

All times are ``time.perf_counter()`` seconds. ``as_dict(origin)`` gives them relative to the
request's start, as adapters put them in message metadata. Example::

    >>> t = CallTiming("call_0", "search", 0, seen=1.0, args_final=2.0, tool_start=1.2,
    ...                tool_end=2.5, decode_end=3.0)
    >>> round(t.saved_s, 3)      # sequential would end at 3.0 + 1.3; partial ends at 3.0
    1.3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CallTiming"]


@dataclass(slots=True)
class CallTiming:
    """Timeline of one tool call. Fields stay None until the moment happens."""

    call_id: str
    name: str
    index: int
    seen: float | None = None
    """The call's start was decoded (tool name known)."""
    args_final: float | None = None
    """The call's arguments were complete."""
    tool_start: float | None = None
    """The tool began running (early, or when the framework invoked it)."""
    tool_end: float | None = None
    """The tool's result (or error) was ready."""
    decode_end: float | None = None
    """Decoding of the whole message ended."""
    origin: float = 0.0
    """When the request began (``as_dict`` gives times relative to it by default)."""
    reran: bool = False
    """The early work was void (the complete arguments differed) and the tool ran again."""
    speculated: int = 0
    """Runs of its body whose result came from a speculative run (started before the call was
    written, :mod:`~conveyor_integrations.speculation`) instead of running again."""
    status: str = "pending"
    """pending | ok | error | aborted | malformed | dropped | not_partial (and, in
    :meth:`as_dict`, running: started, not yet finished)."""

    @property
    def early(self) -> bool:
        """The tool's body started under this library before decoding ended."""
        return (self.tool_start is not None and self.decode_end is not None
                and self.tool_start < self.decode_end)

    @property
    def saved_s(self) -> float | None:
        """Seconds saved against running the tool after decoding ended; None while the tool
        runs; 0.0 when it did not start early."""
        if not self.early:
            return 0.0
        if self.tool_end is None:
            return None
        assert self.tool_start is not None and self.decode_end is not None
        duration = self.tool_end - self.tool_start
        return max(0.0, self.decode_end + duration - max(self.decode_end, self.tool_end))

    def as_dict(self, origin: float | None = None) -> dict[str, Any]:
        """The timings in seconds since ``origin`` (default: the request's start), plus
        ``saved_s``; JSON-serialisable."""
        if origin is None:
            origin = self.origin

        def rel(x: float | None) -> float | None:
            return None if x is None else round(x - origin, 6)

        return {
            "call_id": self.call_id,
            "name": self.name,
            "index": self.index,
            "seen": rel(self.seen),
            "args_final": rel(self.args_final),
            "tool_start": rel(self.tool_start),
            "tool_end": rel(self.tool_end),
            "decode_end": rel(self.decode_end),
            "early": self.early,
            "reran": self.reran,
            "speculated": self.speculated,
            "status": "running" if self.status == "pending" and self.tool_start is not None
            and self.tool_end is None else self.status,
            "saved_s": None if (saved := self.saved_s) is None else round(saved, 6),
        }
