"""Typed events that a parser reads out of a model's stream.

Every parser turns deltas into a flat sequence of these frozen, slotted dataclasses. For one
tool call the order is always::

    CallStarted  (FieldDone | TextChunk | ItemDone)*  (CallDone | CallMalformed)

interleaved with ``Text`` for model text outside calls, and one ``StreamDone`` at ``close()``.

Paths are tuples of object keys and list indices into the call's arguments, e.g. ``("code",)``
or ``("queries", 2)``. Example::

    >>> from conveyor_integrations.events import FieldDone
    >>> FieldDone(index=0, path=("query",), value="weather in Paris").path
    ('query',)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = [
    "CallDone",
    "CallEvent",
    "CallMalformed",
    "CallStarted",
    "Event",
    "FieldDone",
    "ItemDone",
    "JSONPath",
    "StreamDone",
    "Text",
    "TextChunk",
]

JSONPath: TypeAlias = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Text:
    """Model text outside any tool call (a message's content)."""

    text: str


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A tool call began and its tool name is known."""

    index: int
    """Position of the call within the message (0, 1, ...)."""
    id: str
    """The call id: the server's, or one the parser made (stable for a given stream)."""
    name: str
    """The tool's name."""


@dataclass(frozen=True, slots=True)
class FieldDone:
    """A member of the call's arguments is final: nothing later can change it."""

    index: int
    path: JSONPath
    value: Any


@dataclass(frozen=True, slots=True)
class TextChunk:
    """A complete piece (a line, or a top-level Python statement) of a streamed string argument.

    The pieces of one field, concatenated in order, equal the field's final value.
    """

    index: int
    path: JSONPath
    text: str


@dataclass(frozen=True, slots=True)
class ItemDone:
    """Element ``i`` of the list at ``path`` is final."""

    index: int
    path: JSONPath
    i: int
    value: Any


@dataclass(frozen=True, slots=True)
class CallDone:
    """The call is complete and well formed; ``args`` are its full arguments."""

    index: int
    id: str
    name: str
    args: dict[str, Any]
    deps: tuple[int, ...] = field(default=())
    """Plan formats only: the indices of the calls this one references (``$N``)."""


@dataclass(frozen=True, slots=True)
class CallMalformed:
    """The call cannot be completed: bad JSON, an unknown tool, too large, too deep..."""

    index: int
    id: str | None
    name: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class StreamDone:
    """The stream ended (``close()`` was called)."""

    finish_reason: str | None = None


CallEvent: TypeAlias = CallStarted | FieldDone | TextChunk | ItemDone | CallDone | CallMalformed
Event: TypeAlias = Text | CallEvent | StreamDone
