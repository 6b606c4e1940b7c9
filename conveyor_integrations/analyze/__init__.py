"""``conveyor analyze TRACE...``: what partial execution would save on your recorded agent runs.

Readers turn each kind of trace into :class:`~.model.RecordedRun` s; :mod:`.estimate` replays
each message through its parser at its recorded chunk times and moves each recorded tool run to
where complete-call dispatch, partial execution and the pipeline bound would have started it.
"""

from __future__ import annotations

from .estimate import RunEstimate, estimate_run
from .model import RecordedRun, RecordedTool, RecordedTurn
from .readers import read_traces
from .strategy import Strategy, strategies_of_tools
from .trace_io import TraceError

__all__ = ["RecordedRun", "RecordedTool", "RecordedTurn", "RunEstimate", "Strategy",
           "TraceError", "estimate_run", "read_traces", "strategies_of_tools"]
