"""The Planning tool: run an LLMCompiler-style plan, each step as soon as it can run.

A plan is numbered tool calls, one per line; ``$N`` (or ``${N}``) in a string argument stands for
step N's result; ``join()`` ends the plan::

    1. search("population of France")
    2. search("population of Germany")
    3. math("$1 + $2")
    join()

:class:`PlanRunner` takes the events of the ``plan`` parser
(:class:`~conveyor_integrations.parsing.plan.PlanParser`, which turns each complete line into a
``CallDone`` whose ``deps`` are the steps it references) and starts each step the moment its line
is complete and the steps it references have results, so independent steps run concurrently and
the plan runs while the model is still writing it. A failing step fails every step that depends
on it, with a message naming the step that failed. A malformed line, a reference to a missing or
later step, or a cycle makes the whole plan a :class:`PlanError` (after the valid steps ran).

:func:`plan_tool` offers the same as one tool whose whole plan is a string argument, decorated
with ``partial_tool(stream="plan", unit="line")``: :class:`PlanExecution` feeds each complete line
to its own plan parser. Its result equals :func:`run_plan_text` on the complete plan.

Hand-written because the dependency scheduling is the point: LangChain's LLMCompiler example and
the ``llmcompiler`` package schedule plans inside their own agent loops (and need an LLM); here it
is a few dozen lines of asyncio over the parser's events. Example::

    >>> def double(x: int) -> int:
    ...     return 2 * x
    >>> print(run_plan_text({"double": double}, '1. double(2)\\n2. double("$1")\\njoin()'))
    1. double: 4
    2. double: 8
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from ..errors import RunWhenInvoked
from ..events import CallDone, CallMalformed, CallStarted, Event, FieldDone, ItemDone, TextChunk
from ..parsing import get_parser
from ..parsing.plan import STEP_REF, step_refs
from ..partial import partial_tool
from ..policy import Policy, current_policy
from ..spec import spec_of

if TYPE_CHECKING:
    from ..parsing.base import ToolCallParser
    from ..scheduler import Scheduler

__all__ = ["PlanError", "PlanExecution", "PlanRunner", "StepFailed", "StepRecord",
           "arun_plan_text", "held_tools", "plan_tool", "render_plan", "run_plan_text"]



class PlanError(ValueError):
    """The plan itself is wrong: a malformed line, a missing or later step, a cycle."""


class StepFailed(RuntimeError):
    """A step raised, or could not run because a step it references failed."""


@dataclass
class StepRecord:
    """One step of a plan: what it called, when, and how it ended."""

    number: int
    """The step's number in the plan (1, 2, ...); ``$number`` refers to it."""
    name: str
    args: dict[str, Any]
    """The arguments as written (with ``$N`` references)."""
    deps: tuple[int, ...]
    """The numbers of the steps it references."""
    result: Any = None
    error: str | None = None
    started: float | None = None
    """``time.perf_counter()`` when the tool began (``None``: it never ran)."""
    ended: float | None = None
    done: asyncio.Future[Any] | None = field(default=None, repr=False)


def _params(tools: Mapping[str, Callable[..., Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, fn in tools.items():
        try:
            ps = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            continue
        if all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in ps):
            out[name] = [p.name for p in ps]
    return out


def _substitute(value: Any, results: Mapping[int, Any]) -> Any:
    """Replace ``$N`` by step N's result: a string that is exactly ``$N`` becomes the result
    itself; inside a longer string the result is written with ``str``."""
    if isinstance(value, str):
        whole = STEP_REF.fullmatch(value)
        if whole is not None:
            return results[int(whole.group(1) or whole.group(2))]
        return STEP_REF.sub(lambda m: str(results[int(m.group(1) or m.group(2))]), value)
    if isinstance(value, list):
        return [_substitute(v, results) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    return value


class PlanRunner:
    """Runs the steps of a plan as the ``plan`` parser's events arrive.

    ``tools`` maps step tool names to plain or async functions. Steps are numbered in the order
    of their lines (the N-th call is step N, LLMCompiler's convention; other numberings are a
    :class:`PlanError`). Feed it events with :meth:`add` (on a running loop), then
    ``await runner.wait()`` for the records::

        runner = PlanRunner({"search": search, "math": math})
        async for delta, events in stream_turn(backend, request, parser=get_parser("plan",
                                               params=runner.params), session=session):
            runner.add(*events)
        records = await runner.wait()
    """

    def __init__(self, tools: Mapping[str, Callable[..., Any]],
                 held: frozenset[str] = frozenset()) -> None:
        self.tools = dict(tools)
        self.held = held
        """Tools whose steps never run from a partial plan (side effects, approval)."""
        self.held_steps: list[int] = []
        self.params = _params(self.tools)
        """tool -> parameter names, the ``params=`` the plan parser needs for positional args."""
        self.steps: dict[int, StepRecord] = {}
        self.problems: list[str] = []
        self._forward: dict[int, int] = {}     # step -> the later or missing step it references
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, *events: Event) -> None:
        """Take parser events; each complete step starts as soon as its references have results."""
        for ev in events:
            if isinstance(ev, CallMalformed):
                self.problems.append(f"step {ev.index + 1} ({ev.name or '?'}): {ev.reason}")
            elif isinstance(ev, CallDone):
                self._add_step(ev)

    def _add_step(self, ev: CallDone) -> None:
        number = ev.index + 1
        refs = step_refs(ev.args)
        deps = tuple(sorted(refs))
        rec = StepRecord(number, ev.name, dict(ev.args), deps)
        rec.done = asyncio.get_running_loop().create_future()
        self.steps[number] = rec
        if ev.deps and {d + 1 for d in ev.deps} != refs:
            self._fail(rec, f"step {number} ({ev.name}): the plan's steps must be numbered "
                       "1, 2, 3... in order", problem=True)
        elif bad := [d for d in deps if d >= number or d not in self.steps]:
            self._forward[number] = bad[0]
            self._fail(rec, self._ref_problem(number, ev.name, bad[0]), problem=True)
        elif ev.name not in self.tools:
            self._fail(rec, f"step {number}: unknown tool {ev.name!r}", problem=True)
        elif ev.name in self.held:
            self.held_steps.append(number)   # waits for the complete, approved call
        else:
            self._tasks.append(asyncio.ensure_future(self._run(rec)))

    def _ref_problem(self, number: int, name: str, ref: int) -> str:
        if ref == number:
            return f"step {number} ({name}) references itself: a cycle"
        return f"step {number} ({name}) references ${ref}, which is not an earlier step"

    def _fail(self, rec: StepRecord, msg: str, *, problem: bool = False) -> None:
        rec.error = msg
        if problem:
            self.problems.append(msg)
        if rec.done is not None and not rec.done.done():
            rec.done.set_exception(StepFailed(msg))
            rec.done.exception()          # retrieved: dependents read rec.error

    async def _run(self, rec: StepRecord) -> None:
        results: dict[int, Any] = {}
        for d in rec.deps:
            dep = self.steps[d]
            assert dep.done is not None
            await asyncio.wait([dep.done])
            if dep.error is not None:
                self._fail(rec, f"step {rec.number} ({rec.name}) not run: step {d} "
                           f"({dep.name}) failed: {dep.error}")
                return
            results[d] = dep.result
        fn = self.tools[rec.name]
        loop = asyncio.get_running_loop()
        rec.started = time.perf_counter()
        try:
            args = _substitute(rec.args, results)
            positional = args.pop("args") if rec.name not in self.params and "args" in args else []
            if inspect.iscoroutinefunction(fn):
                value = await fn(*positional, **args)
            else:
                value = await loop.run_in_executor(None, lambda: fn(*positional, **args))
        except Exception as exc:  # noqa: BLE001 - a step's error is its outcome
            rec.ended = time.perf_counter()
            self._fail(rec, f"{type(exc).__name__}: {exc}")
            return
        rec.ended = time.perf_counter()
        rec.result = value
        assert rec.done is not None
        rec.done.set_result(value)

    def _check_cycles(self) -> None:
        # only reachable when events come from elsewhere than the parser (it rejects these)
        for number, ref in self._forward.items():
            rec, seen, todo = self.steps[number], set(), [ref]
            while todo:
                n = todo.pop()
                if n == number and ref != number:
                    msg = f"step {number} ({rec.name}) and step {ref} depend on each other: a cycle"
                    assert rec.error is not None
                    self.problems[self.problems.index(rec.error)] = msg
                    rec.error = msg
                    break
                if n not in seen and n in self.steps:
                    seen.add(n)
                    todo.extend(self.steps[n].deps)

    async def wait(self) -> list[StepRecord]:
        """The plan is complete: wait for every step; the records in step order.

        Raises :class:`PlanError` when the plan is malformed (its valid steps ran first).
        """
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.cancel()
        self._check_cycles()
        if self.problems:
            raise PlanError("invalid plan: " + "; ".join(self.problems))
        return [self.steps[n] for n in sorted(self.steps)]

    async def cancel(self) -> None:
        """Cancel the steps still running (and wait until they stop)."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def render_plan(records: Iterable[StepRecord]) -> str:
    """One line per step: ``N. tool: result`` or ``N. tool: error: message``."""
    return "\n".join(f"{r.number}. {r.name}: " + (f"error: {r.error}" if r.error is not None
                                                   else str(r.result)) for r in records)


def _parser(runner: PlanRunner) -> ToolCallParser:
    return get_parser("plan", params=runner.params, tools=list(runner.tools), id_prefix="plan")


async def arun_plan_text(tools: Mapping[str, Callable[..., Any]], plan: str) -> str:
    """Run a complete plan at once (async form of :func:`run_plan_text`)."""
    runner = PlanRunner(tools)
    parser = _parser(runner)
    runner.add(*parser.feed(plan), *parser.close())
    return render_plan(await runner.wait())


def run_plan_text(tools: Mapping[str, Callable[..., Any]], plan: str) -> str:
    """Run a complete plan; every step's result in order, rendered by :func:`render_plan`."""
    return asyncio.run(arun_plan_text(tools, plan))


class PlanExecution:
    """Runs the plan in string argument ``field`` line by line as it is decoded.

    A :class:`~conveyor_integrations.partial.PartialExecution` fed ``TextChunk`` lines::

        partial_tool(run_plan, stream="plan", unit="line", execution=lambda: PlanExecution(tools))
    """

    def __init__(self, tools: Mapping[str, Callable[..., Any]], field: str = "plan") -> None:
        self.tools, self.field = tools, field
        self.runner = PlanRunner(tools)
        self._parser = _parser(self.runner)
        self._pieces: list[str] = []

    async def start(self, call: CallStarted) -> None:
        """Hold back the steps of tools with side effects or that need approval in this
        request: none of them runs from a partial plan."""
        self.runner.held = held_tools(self.tools, current_policy())

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        """Parse a complete line of the plan; a complete step starts at once."""
        if isinstance(event, TextChunk) and event.path == (self.field,):
            self._pieces.append(event.text)
            self.runner.add(*self._parser.feed(event.text))

    async def finish(self, args: dict[str, Any]) -> str:
        """Wait for the steps; the rendered result (that of the complete plan)."""
        plan = args.get(self.field)
        if not isinstance(plan, str):
            raise TypeError(f"{self.field!r} must be a string, not {type(plan).__name__}")
        if "".join(self._pieces) != plan and not self.runner.held:
            await self.runner.cancel()
            return await arun_plan_text(self.tools, plan)
        self.runner.add(*self._parser.close())
        if self.runner.held_steps or "".join(self._pieces) != plan:
            await self.runner.cancel()
            raise RunWhenInvoked(f"steps {self.runner.held_steps} of the plan wait for the "
                                 "framework to invoke it (side effects or approval)")
        return render_plan(await self.runner.wait())

    async def cancel(self) -> None:
        await self.runner.cancel()


def held_tools(tools: Mapping[str, Callable[..., Any]], policy: Policy | None) -> frozenset[str]:
    """The step tools that never run from a partial plan: those decorated
    ``side_effects=True``, and those the request's policy says a human approves first."""
    return frozenset(n for n, fn in tools.items()
                     if ((spec := spec_of(fn)) is not None and spec.side_effects)
                     or (policy is not None and policy.requires_approval(n)))


def plan_tool(tools: Mapping[str, Callable[..., Any]], name: str = "run_plan", *,
              scheduler: Scheduler | None = None) -> Callable[[str], str]:
    """A ready ``run_plan(plan: str) -> str`` tool whose steps run as the plan is decoded.

    Decorated with ``partial_tool``: it starts early when the agent binds this very function
    (its claims go to ``scheduler``, default: the process-wide one); called directly::

        >>> run = plan_tool({"double": lambda x: 2 * x}, "plan_demo")
        >>> print(run('1. double(21)\\njoin()'))
        1. double: 42
    """
    step_tools = dict(tools)

    def run_plan(plan: str) -> str:
        """Run a numbered plan of tool calls, one per line (``$N`` is step N's result); return
        every step's result in order."""
        return run_plan_text(step_tools, plan)

    run_plan.__name__ = run_plan.__qualname__ = name
    return cast(Callable[[str], str], partial_tool(
        run_plan, stream="plan", unit="line", execution=lambda: PlanExecution(step_tools),
        scheduler=scheduler))
