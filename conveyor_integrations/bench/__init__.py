"""The benchmark (extra ``bench``): the paper's workloads run sequentially, with complete-call
dispatch, with partial execution and against the pipeline bound; the library's overhead; scale.

``conveyor bench`` runs it (:mod:`.cli`); :mod:`.workloads` and :mod:`.transcripts` hold the
workloads, :mod:`.harness` runs one transcript one way through a LangGraph ``ToolNode``,
:mod:`.report` summarises, :mod:`.plot` draws the timelines, :mod:`.overhead` and :mod:`.scale`
measure the library alone. Example::

    from conveyor_integrations.bench import main
    main(["--workloads", "validation", "--rates", "50", "--runs", "5", "--no-scale"])
"""

from .cli import main, parse_args, run_bench

__all__ = ["main", "parse_args", "run_bench"]
