"""What an agent task is: the user's message and the model's recorded turns; a task family.

The tasks themselves are in the ``task_data_*`` modules and :data:`~.tasks.FAMILIES`. Example::

    >>> Task("sql", "t", "How many orders?", ("Let me count.", "There are 400,000.")).turns[-1]
    'There are 400,000.'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Family", "Task"]


@dataclass(frozen=True)
class Task:
    """One recorded agent run: the user's message and the model's turns, the answer last."""

    family: str
    name: str
    prompt: str
    """The user's message."""
    turns: tuple[str, ...]
    """The assistant messages in order (Hermes text); the last one calls no tool."""


@dataclass(frozen=True)
class Family:
    """A task family: its tool kinds and its tasks."""

    name: str
    title: str
    kinds: tuple[str, ...]
    """The tool kinds (names of :data:`.task_tools.KINDS`) its agents hold."""
    tasks: tuple[Task, ...]
    system: str = ""
    """The agent's system prompt."""
    note: str = ""
    """What a reader should know about the family's figures."""
