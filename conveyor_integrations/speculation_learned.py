"""Learned predictions: what this agent did before, as tool-to-tool transitions.

PASTE's idea (arXiv 2603.18897), for one agent run and its own history: when the model writes a
call of a read-only tool whose argument is a URL that appeared in an earlier tool result, the
run learns a :class:`Derivation`: "after tool A, call B with field f set to each URL of that
site found in A's result, between the same delimiters". From then on, each result of A in the
run predicts those calls (``(tool, args)`` pairs), and they are speculated like a
declared ``follow_up``'s. Only URL-shaped values are learned (``scheme://host/...``): their
prefix and delimiters say what to extract from a new result without guessing at free text.
Written here because no library learns argument derivations from a tool trace. Example::

    >>> from conveyor_integrations.spec import spec_for_callable
    >>> def search(q: str) -> str: ...
    >>> def fetch(urls: list[str]) -> str: ...
    >>> a = spec_for_callable("search", search)
    >>> b = spec_for_callable("fetch", fetch, read_only=True)
    >>> run = Learned()
    >>> run.saw_result(a, "- One <https://x.example/1>: ...\\n- Two <https://x.example/2>: ...")
    >>> run.saw_call(b, {"urls": ["https://x.example/2"]})
    >>> run.predict(a, "- Three <https://x.example/3>: ...")
    [('fetch', {'urls': ['https://x.example/3']})]
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .spec import ToolSpec

__all__ = ["Derivation", "Learned"]

_URL_PREFIX = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s]+/")
_MAX_VALUE = 2048


@dataclass(frozen=True, slots=True)
class Derivation:
    """After ``source``, call ``target`` with ``field`` set to each value in the result that
    starts with ``prefix`` and sits between ``open`` and ``close``."""

    source: ToolSpec
    target: str
    field: str
    items: bool
    """The field is a list: one prediction per value, as ``[value]`` (one item's body)."""
    open: str
    prefix: str
    close: str


class Learned:
    """One agent run's recent tool results and the derivations learned from its calls."""

    def __init__(self, *, memory: int = 4, max_chars: int = 65536, max_rules: int = 16) -> None:
        self._results: deque[tuple[ToolSpec, str]] = deque(maxlen=memory)
        self._max_chars, self._max_rules = max_chars, max_rules
        self.rules: list[Derivation] = []

    def saw_result(self, spec: ToolSpec, value: Any) -> None:
        """``spec``'s call had ``value`` (kept, truncated, for the run's next calls)."""
        if isinstance(value, str):
            self._results.append((spec, value[:self._max_chars]))

    def saw_call(self, spec: ToolSpec, args: dict[str, Any]) -> None:
        """The model wrote a call of read-only ``spec``: learn where its URLs came from."""
        for name, value in args.items():
            items = isinstance(value, list)
            for v in value if items else [value]:
                if isinstance(v, str):
                    self._learn(spec.name, name, items, v)

    def _learn(self, target: str, field: str, items: bool, value: str) -> None:
        prefix = _URL_PREFIX.match(value)
        if prefix is None or len(value) > _MAX_VALUE:
            return
        for source, text in reversed(self._results):
            i = text.find(value)
            if i <= 0:
                continue
            end = i + len(value)
            close = text[end] if end < len(text) else "\n"
            rule = Derivation(source, target, field, items, text[i - 1], prefix.group(), close)
            if rule not in self.rules and len(self.rules) < self._max_rules:
                self.rules.append(rule)
            return

    def predict(self, spec: ToolSpec, value: Any) -> list[tuple[str, dict[str, Any]]]:
        """The calls this run's derivations predict after ``spec``'s result ``value``."""
        if not isinstance(value, str) or not self.rules:
            return []
        text = value[:self._max_chars]
        out: list[tuple[str, dict[str, Any]]] = []
        for rule in self.rules:
            if rule.source is not spec:
                continue
            anchor = rule.open + rule.prefix
            at = text.find(anchor)
            while at >= 0:
                start = at + len(rule.open)
                end = text.find(rule.close, start)
                found = text[start:end if end >= 0 else len(text)]
                if 0 < len(found) <= _MAX_VALUE and not any(c.isspace() for c in found):
                    out.append((rule.target, {rule.field: [found] if rule.items else found}))
                at = text.find(anchor, start)
        return out
