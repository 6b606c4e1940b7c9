"""What may start early in one request: the bound tools, and small wrappers that narrow them.

A request's policy answers one question per call, "may this call start, and when?", with a
:class:`Start` or None. The base is :class:`BoundTools`, the decorated tool *objects* the agent
bound to the request, matched by identity: a tool the agent does not hold is never started, even
when a decorated tool of the same name exists elsewhere. Each rule is a wrapper of one override
(pydantic-ai's toolsets are the model), so a rule lives in one place and rules compose::

    >>> from conveyor_integrations import partial_tool
    >>> @partial_tool(start_on=["to"], side_effects=False)
    ... def lookup(to: str) -> str: return to
    >>> policy = ApprovalRequired(HoldSideEffects(BoundTools([lookup])), frozenset({"send"}))
    >>> policy.decide("lookup").spec is lookup.conveyor_spec
    True
    >>> policy.decide("send") is None, policy.decide("unknown") is None
    (True, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import Context, ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from .spec import ToolSpec, spec_of

__all__ = [
    "ApprovalRequired",
    "ApprovalSnapshot",
    "BoundTools",
    "CompleteCallDispatch",
    "HoldSideEffects",
    "Policy",
    "Start",
    "approval_snapshot",
    "bound_specs",
    "current_policy",
    "set_current_policy",
]

_CURRENT: ContextVar[Policy | None] = ContextVar("conveyor_policy", default=None)


@dataclass(frozen=True, slots=True)
class Start:
    """Start an execution of ``spec`` for the call."""

    spec: ToolSpec
    complete_only: bool = False
    """Start only when the whole call is decoded (and run it whole), never on a prefix."""


class Policy(Protocol):
    """Decides, per tool name, whether and when a call of this request starts early."""

    def decide(self, name: str) -> Start | None:
        """A :class:`Start` for calls of ``name``, or None: the framework runs them as usual.

        A session asks once per tool name and keeps the answer for the rest of its message."""
        ...

    def streams(self) -> dict[str, dict[str, str]]:
        """The ``streams=`` mapping the parser needs: tool -> {field: unit}."""
        ...

    def requires_approval(self, name: str) -> bool:
        """A human approves calls of ``name`` first (tools that run other tools, such as a plan,
        ask this of the tools they run)."""
        ...


def current_policy() -> Policy | None:
    """The policy of the request whose early run is executing (None outside one)."""
    return _CURRENT.get()


def bound_specs(tools: Iterable[Any]) -> dict[str, ToolSpec]:
    """The specs of the decorated tools among ``tools``, by name; undecorated ones are skipped.

    Two different decorated tools with one name are a :class:`ValueError`: the model's call
    could not say which one it means.
    """
    specs: dict[str, ToolSpec] = {}
    for tool in tools:
        if isinstance(tool, str):
            raise TypeError(f"bind the tool object, not its name {tool!r}: tools are matched by "
                            "identity, so that only the tools the agent holds run early")
        spec = spec_of(tool)
        if spec is None:
            continue
        other = specs.get(spec.name)
        if other is not None and other is not spec:
            raise ValueError(f"two different decorated tools are named {spec.name!r}; a model's "
                             "call of that name could mean either: rename one")
        specs[spec.name] = spec
    return specs


class BoundTools:
    """The decorated tools bound to a request (the bound-tool filter). Side-effect tools start
    only on their complete call; wrap in :class:`HoldSideEffects` to keep them for the framework."""

    __slots__ = ("specs",)

    def __init__(self, tools: Iterable[Any] | Mapping[str, ToolSpec] = ()) -> None:
        self.specs: Mapping[str, ToolSpec] = (
            dict(tools) if isinstance(tools, Mapping) else bound_specs(tools))

    def decide(self, name: str) -> Start | None:
        spec = self.specs.get(name)
        return None if spec is None else Start(spec, complete_only=spec.side_effects)

    def streams(self) -> dict[str, dict[str, str]]:
        return {n: dict(s.streams) for n, s in self.specs.items() if s.streams}

    def requires_approval(self, name: str) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class _Wrapper:
    inner: Policy

    def decide(self, name: str) -> Start | None:
        return self.inner.decide(name)

    def streams(self) -> dict[str, dict[str, str]]:
        return self.inner.streams()

    def requires_approval(self, name: str) -> bool:
        return self.inner.requires_approval(name)


@dataclass(frozen=True, slots=True)
class HoldSideEffects(_Wrapper):
    """``side_effects=True`` tools never start early: only the framework runs them."""

    def decide(self, name: str) -> Start | None:
        start = self.inner.decide(name)
        return None if start is None or start.spec.side_effects else start


@dataclass(frozen=True, slots=True)
class ApprovalRequired(_Wrapper):
    """Tools that a human approves first never start before the framework invokes them."""

    names: frozenset[str] = frozenset()

    def decide(self, name: str) -> Start | None:
        return None if name in self.names else self.inner.decide(name)

    def requires_approval(self, name: str) -> bool:
        return name in self.names or self.inner.requires_approval(name)


@dataclass(frozen=True, slots=True)
class CompleteCallDispatch(_Wrapper):
    """Every tool starts when its whole call is decoded, run whole (eager dispatch, no prefix)."""

    def decide(self, name: str) -> Start | None:
        start = self.inner.decide(name)
        return None if start is None else Start(start.spec, complete_only=True)

    def streams(self) -> dict[str, dict[str, str]]:
        return {}


def run_under(policy: Policy) -> Context:
    """A fresh context in which :func:`current_policy` is ``policy`` (an early run's task)."""
    ctx = Context()
    ctx.run(_CURRENT.set, policy)
    return ctx


def set_current_policy(policy: Policy | None) -> None:
    """Make ``policy`` the current one in this context (where a request's policy was sent)."""
    _CURRENT.set(policy)


@dataclass(frozen=True, slots=True)
class ApprovalSnapshot:
    """What a request's policy says needs approval, in a form that can be sent to another
    process (a Ray actor running the call). It starts nothing itself."""

    names: frozenset[str] = frozenset()
    everything: bool = False
    """The policy was the user's own, so it cannot be read ahead: every tool needs approval."""

    def decide(self, name: str) -> Start | None:
        return None

    def streams(self) -> dict[str, dict[str, str]]:
        return {}

    def requires_approval(self, name: str) -> bool:
        return self.everything or name in self.names


def approval_snapshot(policy: Policy | None) -> ApprovalSnapshot | None:
    """``policy``'s approvals as an :class:`ApprovalSnapshot` (None for no policy). A policy of
    the user's own is taken to require approval of every tool (nothing unapproved runs)::

        >>> approval_snapshot(ApprovalRequired(BoundTools(), frozenset({"pay"}))).names
        frozenset({'pay'})
    """
    if policy is None:
        return None
    names: set[str] = set()
    while not isinstance(policy, BoundTools | ApprovalSnapshot):
        if isinstance(policy, ApprovalRequired):
            names |= policy.names
        if not isinstance(policy, _Wrapper):
            return ApprovalSnapshot(everything=True)
        policy = policy.inner
    if isinstance(policy, ApprovalSnapshot):
        return ApprovalSnapshot(frozenset(names | policy.names), policy.everything)
    return ApprovalSnapshot(frozenset(names))
