"""Whole agent tasks: a user's message, the model's recorded turns, the tools each turn calls.

A :class:`~.task_model.Task` is one agent run as the model wrote it: ``turns[i]`` is the i-th
assistant message (Hermes text, built with :func:`~.transcripts.hermes`), every turn but the
last calls tools, and the last is the final answer, with no call. A task family
(:class:`~.task_model.Family`, :data:`FAMILIES`) names the tool kinds its tasks use
(``web_search``, ``fetch_pages``, ``run_python``, ``run_sql``, ``run_plan``: see
:mod:`.task_tools`). The turns are ours, written
for the benchmark, and include tool-light turns (a one-line lookup, a short schema query) where
partial execution can gain little, so that the task figures are honest. Example::

    >>> sorted(FAMILIES)
    ['analysis', 'planner', 'research', 'sql']
    >>> all(3 <= len(t.turns) <= 8 for f in FAMILIES.values() for t in f.tasks)
    True
"""

from __future__ import annotations

from .task_data_analysis import ANALYSIS
from .task_data_planner import PLANNER
from .task_data_research import RESEARCH
from .task_data_sql import SQL_TASKS
from .task_model import Family, Task

__all__ = ["FAMILIES", "Family", "Task"]


FAMILIES: dict[str, Family] = {f.name: f for f in (RESEARCH, ANALYSIS, SQL_TASKS, PLANNER)}
"""The task families by name."""
