"""How each tool of a recorded run would start under partial execution, for the estimate.

From the tools themselves (``--tools MODULE:ATTR``: their ``partial_tool`` options, read off
their :class:`~conveyor_integrations.spec.ToolSpec`), from ``--strategy NAME=SPEC`` on the
command line, or guessed from a call's arguments when neither says (``guess``: a string
argument of several lines is streamed line by line, a list argument item by item, anything
else starts on its complete call). ``SPEC`` is ``start_on:F1,F2``, ``stream:FIELD[:UNIT]``,
``items:FIELD`` or ``complete``. Example::

    >>> Strategy.parse("run_python=stream:code:statement")
    ('run_python', Strategy(kind='stream', fields=('code',), unit='statement', source='given', defaults=None))
    >>> Strategy.guess({"code": "import os\\nprint(1)\\n"}).describe()
    'stream code by line (guessed)'
    >>> Strategy.parse("search=start_of:q")
    Traceback (most recent call last):
    ...
    ValueError: --strategy search=start_of:q: SPEC is start_on:F1,F2 | stream:FIELD[:UNIT] | items:FIELD | complete
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Strategy", "strategies_of_tools"]

_SPEC = "start_on:F1,F2 | stream:FIELD[:UNIT] | items:FIELD | complete"


@dataclass(frozen=True, slots=True)
class Strategy:
    """When one tool's work could start: the parser events it waits for."""

    kind: str
    """``start_on`` (the whole tool once ``fields`` are final), ``stream`` (each ``unit`` of
    the string field), ``items`` (each element of the list field) or ``complete``."""
    fields: tuple[str, ...] = ()
    unit: str = "line"
    source: str = "given"
    """``tools`` (read off a decorated tool), ``given`` (``--strategy``) or ``guessed``."""
    defaults: tuple[tuple[str, str], ...] | None = None
    """The tool's optional fields and their defaults (as JSON), where known (``--tools``): a
    ``start_on`` run is void, and the tool runs again, when the call gives another field a
    value other than its default. Unknown (``--strategy``): any other field given voids it."""

    def reruns(self, args: Mapping[str, Any]) -> bool:
        """A ``start_on`` early run on this call's fields would be void (see ``defaults``)."""
        known = dict(self.defaults or ())
        for key, value in args.items():
            if key in self.fields:
                continue
            if self.defaults is None or key not in known:
                return True
            if json.dumps(value, sort_keys=True, default=str) != known[key]:
                return True
        return False

    @classmethod
    def parse(cls, text: str) -> tuple[str, Strategy]:
        """``NAME=SPEC`` as ``--strategy`` takes it."""
        name, _, spec = text.partition("=")
        kind, _, rest = spec.partition(":")
        parts = [p for p in rest.split(":") if p] if rest else []
        ok = bool(name) and (
            (kind == "complete" and not parts)
            or (kind == "start_on" and len(parts) == 1)
            or (kind == "items" and len(parts) == 1)
            or (kind == "stream" and len(parts) in (1, 2)
                and (len(parts) == 1 or parts[1] in ("line", "statement"))))
        if not ok:
            raise ValueError(f"--strategy {text}: SPEC is {_SPEC}")
        if kind == "start_on":
            return name, cls(kind, tuple(f for f in parts[0].split(",") if f))
        if kind == "stream":
            return name, cls(kind, (parts[0],), parts[1] if len(parts) == 2 else "line")
        return name, cls(kind, tuple(parts))

    @classmethod
    def guess(cls, args: Mapping[str, Any] | None) -> Strategy:
        """A strategy from one call's arguments (see the module's docstring)."""
        for key, value in (args or {}).items():
            if isinstance(value, str) and value.count("\n") >= 2:
                return cls("stream", (key,), "line", "guessed")
        for key, value in (args or {}).items():
            if isinstance(value, list) and len(value) > 1:
                return cls("items", (key,), source="guessed")
        return cls("complete", source="guessed")

    def streams(self) -> dict[str, str]:
        """The parser's ``streams`` entry for this tool (field -> unit)."""
        return {self.fields[0]: self.unit} if self.kind == "stream" else {}

    def describe(self) -> str:
        """For the report's notes."""
        what = {"start_on": f"start on {', '.join(self.fields) or 'its call'}",
                "stream": f"stream {self.fields[0] if self.fields else '?'} by {self.unit}",
                "items": f"each item of {self.fields[0] if self.fields else '?'}",
                "complete": "on its complete call"}.get(self.kind, self.kind)
        return f"{what} ({'from its partial_tool' if self.source == 'tools' else self.source})"


def strategies_of_tools(tools: Iterable[Any]) -> dict[str, Strategy]:
    """The strategies of decorated tools (LangChain or LlamaIndex tools, or functions), by
    name; an undecorated tool starts on its complete call (what complete-call dispatch gives).
    """
    from ..spec import spec_of

    out: dict[str, Strategy] = {}
    for tool in tools:
        spec = spec_of(tool)
        name = getattr(tool, "name", None) or getattr(getattr(tool, "metadata", None), "name",
                                                       None) or getattr(tool, "__name__", None)
        if spec is None:
            if isinstance(name, str):
                out[name] = Strategy("complete", source="not decorated")
            continue
        kind, fields = spec.starts_on
        if kind == "custom":
            kind, fields = "complete", ()
        unit = spec.streams.get(fields[0], "line") if kind == "stream" else "line"
        defaults = tuple(sorted((k, json.dumps(v, sort_keys=True, default=str))
                                for k, v in spec.defaults.items()))
        out[spec.name] = Strategy(kind, fields, "statement" if unit == "statement" else "line",
                                  "tools", defaults)
    return out
