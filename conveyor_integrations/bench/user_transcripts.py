r"""``conveyor bench --transcripts FILE --tools MODULE:ATTR``: your messages, your tools.

Runs assistant messages you recorded through the modes of the built-in workloads, with your own
tools: ``sequential`` (nothing starts before the message is decoded, then a LangGraph
``ToolNode`` runs the calls), ``complete_call`` (each call starts once it is decoded) and
``partial`` (the tools' own ``partial_tool`` strategies), each message replayed at each token
rate, ``runs`` times; the ideal (the pipeline bound) where it is well-defined. The records are
:class:`~conveyor_integrations.bench.records.RunRecord` s of the workload ``transcripts`` (the
transcript is the line's ``name``, or ``line N``), so ``summarize``, ``markdown_table`` and the
timelines work on them as on the built-in ones.

``FILE`` is JSON lines, one recorded message a line; blank lines and lines starting with ``#``
are skipped::

    {"name": "paris", "tools": ["weather", "convert"], "text": "<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>"}
    {"name": "oslo", "tools": ["weather"], "deltas": [{"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]}]}

``text`` is the model's text (Hermes ``<tool_call>`` blocks by default); ``deltas`` are OpenAI
chat-completion chunk deltas (format ``openai`` by default); ``tool_format`` names another
format of :func:`~conveyor_integrations.parsing.get_parser`; ``tools`` lists the tools the
message may call, all among ``MODULE:ATTR``'s. ``MODULE:ATTR`` names a list of tools (or a
zero-argument function returning one), as ``uvicorn app:app`` names an app: LangChain tools or
plain functions, decorated with ``partial_tool`` or not. Every problem of either is an error
that names its line or attribute, raised before any tool runs.

Why this is written by hand beside the built-in workloads: a :class:`.workload_base.Workload`
owns its tools and traces each piece of their work from inside them; a user's tools are opaque.
So the runner here (:mod:`.user_transcripts_modes`) times whole tool runs, from the session's
timings and LangChain's callbacks, and gives an ideal only where a call is one piece whose start
the parser's events mark (a whole-call or ``start_on`` tool). The file is checked by hand too,
line by line, so that each error says which line is wrong and why. Example (the tools of
:func:`example_tools`)::

    conveyor bench --transcripts messages.jsonl --rates 50 --runs 3 --no-scale --no-overhead \
        --tools conveyor_integrations.bench.user_transcripts:example_tools
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..scheduler import default_scheduler
from .records import MODES, RunRecord
from .user_transcripts_file import (
    ToolsError,
    TranscriptError,
    UserBenchError,
    UserTranscript,
    load_transcripts,
)
from .user_transcripts_modes import Observed, ToolModes, ideal_of, strategy_of

__all__ = ["ToolsError", "TranscriptError", "UserBench", "UserBenchError", "UserTranscript",
           "by_message", "example_tools", "load_tools", "load_transcripts",
           "run_user_transcripts", "tool_notes"]

class UserBench(NamedTuple):
    """What :func:`run_user_transcripts` returns."""

    records: list[RunRecord]
    problems: list[str]
    """Runs that failed, modes whose tool results differ (as ``conveyor bench`` reports them)."""
    notes: list[str]
    """How each tool starts, and why a message has no ideal."""


def _tool_list(obj: Any, where: str) -> list[Any]:
    """``obj`` (a list of tools, or a zero-argument function returning one) as LangChain
    tools, plain functions converted as ``ToolNode`` converts them."""
    from langchain_core.tools import BaseTool, tool

    if isinstance(obj, BaseTool):
        raise ToolsError(f"{where} is one tool, not a list of them: write [{obj.name}]")
    if not isinstance(obj, list | tuple) and callable(obj):
        try:
            needed = [p for p in inspect.signature(obj).parameters.values()
                      if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        except (TypeError, ValueError):
            needed = []
        if needed:
            raise ToolsError(f"{where} is a function of {[p.name for p in needed]}: give a list "
                             "of tools, or a function of no arguments that returns one")
        try:
            obj = obj()
        except Exception as exc:
            raise ToolsError(f"{where}() raised {type(exc).__name__}: {exc}") from exc
        where = f"{where}()"
    if not isinstance(obj, list | tuple) or not obj:
        what = "an empty one" if isinstance(obj, list | tuple) else type(obj).__name__
        raise ToolsError(f"{where} must be a non-empty list of tools, not {what}")
    tools: list[Any] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(obj):
        if isinstance(item, BaseTool):
            lc = item
        elif inspect.isroutine(item):
            if item.__name__.startswith("<"):
                raise ToolsError(f"{where}[{i}] is a lambda: use a def (its name is the tool's)")
            try:
                lc = tool(item)
            except Exception as exc:
                raise ToolsError(f"{where}[{i}] ({item.__name__}) cannot be made a LangChain "
                                 f"tool: {exc}") from exc
        else:
            raise ToolsError(f"{where}[{i}] is {type(item).__name__}, not a LangChain tool or "
                             "a function")
        if lc.name in seen:
            raise ToolsError(f"{where}[{seen[lc.name]}] and [{i}] are both named {lc.name!r}")
        seen[lc.name] = i
        tools.append(lc)
    return tools


def load_tools(spec: str) -> list[Any]:
    """The tools ``MODULE:ATTR`` names, as LangChain tools (plain functions converted, their
    ``partial_tool`` strategy kept). The current directory is put on ``sys.path`` first, as
    ``uvicorn`` does; ``ATTR`` may be dotted. Raises :class:`ToolsError`. Example::

        >>> [t.name for t in load_tools("conveyor_integrations.bench.user_transcripts:"
        ...                             "example_tools")]
        ['weather', 'convert']
        >>> try:
        ...     load_tools("conveyor_integrations.bench.user_transcripts:TOOLS")
        ... except ToolsError as exc:
        ...     print(exc)
        conveyor_integrations.bench.user_transcripts:TOOLS: the module has no attribute 'TOOLS'
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ToolsError(f"{spec!r}: give MODULE:ATTR, e.g. myagent.tools:TOOLS")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            raise ToolsError(f"{spec}: no module named {exc.name!r} (run from the folder that "
                             "holds it, or put it on PYTHONPATH)") from None
        raise ToolsError(f"{spec}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:
        raise ToolsError(f"{spec}: importing {module_name} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ToolsError(f"{spec}: the module has no attribute {attr!r}") from None
    return _tool_list(obj, spec)


def _check(path: str | Path, transcripts: Sequence[UserTranscript], tools: Sequence[Any],
           where: str) -> None:
    known = {t.name for t in tools}
    for t in transcripts:
        for name in t.tools:
            if name not in known:
                raise TranscriptError(path, t.line, f'"tools" names {name!r}, which is not '
                                      f"among the tools of {where}: {sorted(known)}")


def tool_notes(transcripts: Sequence[UserTranscript], tools: Sequence[Any]) -> list[str]:
    """How each tool the messages may call starts, and which messages get no ideal and why."""
    strategies = {t.name: strategy_of(t) for t in tools}
    used = dict.fromkeys(n for t in transcripts for n in t.tools)
    notes = [f"tool {n}: {strategies[n].describe()}" for n in used]
    for t in transcripts:
        streamed = [n for n in dict.fromkeys(t.calls) if not strategies[n].whole_call]
        if streamed:
            notes.append(f"{t.name}: no ideal, it calls {', '.join(streamed)} (not a whole-call "
                         "or start_on strategy)")
    return notes


def _differ(got: dict[str, Observed]) -> bool:
    return len({o.record.result for o in got.values() if not o.record.aborted}) > 1


async def run_user_transcripts(path: str | Path, tools: str | Sequence[Any], *,
                               rates: Sequence[float], runs: int = 1,
                               progress: Any = None) -> UserBench:
    r"""Run every message of ``path`` in each mode, at each replay rate (tokens/s), ``runs``
    times, with the tools ``tools`` names (``MODULE:ATTR``, or the list itself); see the
    module's docstring. ``progress`` is a ``rich.progress.Progress`` or None. Everything is
    checked before any tool runs (:class:`UserBenchError`); a failing run is a problem, not an
    error. The modes' order turns with each run, as in ``conveyor bench``. Example::

        >>> import asyncio, json, pathlib, tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(folder.name) / "messages.jsonl"
        >>> text = ('<tool_call>{"name": "weather", "arguments": {"city": "Paris"}}</tool_call>'
        ...         ' <tool_call>{"name": "convert", "arguments": {"celsius": 21}}</tool_call>')
        >>> _ = path.write_text(json.dumps({"name": "paris", "text": text,
        ...                                 "tools": ["weather", "convert"]}) + "\n")
        >>> bench = asyncio.run(run_user_transcripts(
        ...     path, "conveyor_integrations.bench.user_transcripts:example_tools",
        ...     rates=[2000.0], runs=1))
        >>> [(r.mode, r.result) for r in bench.records], bench.problems
        ... # doctest: +NORMALIZE_WHITESPACE
        ([('sequential', 'Paris: sunny\n69.8 F'), ('complete_call', 'Paris: sunny\n69.8 F'),
          ('partial', 'Paris: sunny\n69.8 F')], [])
        >>> [r.ideal_s is not None for r in bench.records if r.mode == "partial"]
        [True]
        >>> folder.cleanup()
    """
    transcripts = load_transcripts(path)
    where = tools if isinstance(tools, str) else "the tools given"
    tool_list = load_tools(tools) if isinstance(tools, str) else _tool_list(list(tools), where)
    _check(path, transcripts, tool_list, where)
    if runs < 1 or not rates or any(not r > 0 for r in rates):
        raise UserBenchError("runs must be at least 1, and rates positive tokens/s")
    modes = ToolModes(tool_list, default_scheduler())
    records: list[RunRecord] = []
    problems: list[str] = []
    reran: dict[str, None] = {}
    total = len(rates) * len(transcripts) * runs * len(MODES)
    task = progress.add_task("user transcripts", total=total) if progress is not None else None
    for t in transcripts:
        with contextlib.suppress(Exception):    # a failing ToolNode shows in the runs
            await modes.warm_up(t.tools)
    for rate in rates:
        for t in transcripts:
            cell: list[RunRecord] = []
            for run in range(runs):
                got: dict[str, Observed] = {}
                for mode in MODES[run % len(MODES):] + MODES[:run % len(MODES)]:
                    if progress is not None:
                        progress.update(task, advance=1,
                                        description=f"{t.name} {mode} @ {rate:g} tok/s")
                    try:
                        got[mode] = await modes.run(t.name, t.transcript, t.tool_format,
                                                    t.tools, mode, rate=rate, run=run)
                    except Exception as exc:  # noqa: BLE001 - one failed run must not lose the rest
                        problems.append(f"{t.name} @ {rate:g} tok/s run {run} {mode}: "
                                        f"{type(exc).__name__}: {exc}")
                partial, sequential = got.get("partial"), got.get("sequential")
                for timing in partial.timings.values() if partial is not None else ():
                    if timing.reran:
                        reran[f"{t.name}: {timing.name} ran again on its complete call (the "
                              "arguments it started on differ from the call's: fields outside "
                              "start_on were left at their defaults)"] = None
                if partial is not None and all(modes.strategies[n].whole_call for n in t.calls):
                    ideal = None if sequential is None else ideal_of(modes.strategies, partial,
                                                                     sequential)
                    partial.record.ideal_s = ideal
                    partial.record.incomplete = ideal is None
                if _differ(got):
                    problems.append(f"{t.name} @ {rate:g} tok/s run {run}: the modes' tool "
                                    "results differ")
                cell.extend(got[m].record for m in MODES if m in got)
            records.extend(cell)
            if progress is not None and cell:
                medians = {m: statistics.median(r.latency_s for r in cell if r.mode == m)
                           for m in MODES if any(r.mode == m for r in cell)}
                progress.console.print(f"{t.name} @ {rate:g} tok/s: " + ", ".join(
                    f"{m} {v:.2f} s" for m, v in medians.items()))
    return UserBench(records, problems, tool_notes(transcripts, tool_list) + list(reran))


def by_message(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Copies of ``records`` whose workload is ``transcripts/<message>``: ``summarize`` then
    gives a row per message rather than one per rate over all of them (whose ``ideal`` column
    mixes in only the messages that have one). For tables: the names are the user's, not file
    names, so keep the records themselves for ``_plots``. Example::

        >>> r = RunRecord("transcripts", "paris", "partial", 50.0, "replay", latency_s=1.0,
        ...               decode_s=0.9, tokens=40)
        >>> [x.workload for x in by_message([r])], r.workload
        (['transcripts/paris'], 'transcripts')
    """
    return [dataclasses.replace(r, workload=f"{r.workload}/{r.transcript}",
                                spans=list(r.spans)) for r in records]


def example_tools() -> list[Any]:
    """The tools of the examples: ``weather`` starts once its ``city`` is decoded
    (``start_on``), ``convert`` is a plain function (it starts on its complete call)."""
    from ..partial import partial_tool

    async def weather(city: str) -> str:
        """Tomorrow's forecast for ``city``."""
        await asyncio.sleep(0.05)           # stands for a weather service's latency
        return f"{city}: sunny"

    def convert(celsius: float) -> str:
        """``celsius`` in Fahrenheit."""
        return f"{celsius * 9 / 5 + 32:g} F"

    return [partial_tool(weather, start_on=["city"]), convert]
