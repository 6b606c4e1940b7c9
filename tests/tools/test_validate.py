"""Validate tool: field-by-field validation agrees with validating the whole object, and an invalid
early field stops decoding (fewer tokens decoded than the full message)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, field_validator, model_validator

from conveyor_integrations.backends import ChatRequest, Replay
from conveyor_integrations.events import CallStarted, Event, FieldDone, ItemDone, TextChunk
from conveyor_integrations.parsing import get_parser
from conveyor_integrations.scheduler import Scheduler
from conveyor_integrations.tools.validate import (
    InvalidArguments,
    ValidateExecution,
    validated_tool,
    validation_errors,
)
from conveyor_integrations.turn import run_turn


class Address(BaseModel):
    city: str
    zip: str = Field(pattern=r"^\d{5}$")


class Person(BaseModel):
    name: str = Field(min_length=1)
    age: int = Field(ge=0, le=150)
    email: str
    tags: list[int] = []
    address: Address | None = None
    bio: str = ""
    notes: str = ""

    @field_validator("email")
    @classmethod
    def has_at(cls, v: str) -> str:
        if "@" not in v:
            raise ValueError("an email needs an @")
        return v

    @model_validator(mode="after")
    def adult_tags(self) -> Person:
        if self.age < 18 and len(self.tags) > 2:
            raise ValueError("minors have at most 2 tags")
        return self


SCHEMA: dict[str, Any] = {
    "type": "object",
    "$defs": {"small": {"type": "integer", "minimum": 0, "maximum": 9}},
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0},
        "email": {"type": "string", "pattern": "@"},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/small"}, "maxItems": 4},
        "bio": {"type": "string"},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def no_spaces(path: tuple[str | int, ...], value: Any) -> str | None:
    return "no spaces allowed" if isinstance(value, str) and " " in value else None


VALIDATORS: dict[str, dict[str, Any]] = {"model": {"model": Person}, "schema": {"schema": SCHEMA},
                                         "check": {"check": no_spaces}}


def events(args: dict[str, Any]) -> list[Event]:
    """The events a parser emits for ``args``, by decoding a hermes call token by token."""
    parser = get_parser("hermes")
    text = "<tool_call>" + json.dumps({"name": "save", "arguments": args}) + "</tool_call>"
    return [e for ch in text for e in parser.feed(ch)]


async def run_partial(args: dict[str, Any], **kw: Any) -> tuple[str | None, Any]:
    """Feed ``args`` part by part; the first early error (or None) and the finished result."""
    ex = ValidateExecution(lambda a: sorted(a), **kw)
    await ex.start(CallStarted(0, "c1", "save"))
    for ev in events(args):
        if isinstance(ev, (FieldDone, ItemDone, TextChunk)):
            try:
                await ex.feed(ev)
            except InvalidArguments as exc:
                return exc.errors[0], None
    try:
        return None, await ex.finish(args)
    except InvalidArguments as exc:
        return exc.errors[0], None


VALID = {"name": "Ada", "age": 36, "email": "ada@x.org", "tags": [1, 2, 3],
         "address": {"city": "London", "zip": "12345"}, "bio": "mathematician"}


@pytest.mark.parametrize("kind", list(VALIDATORS))
def test_valid_record_passes_both_ways(kind: str) -> None:
    args = dict(VALID)
    if kind == "schema":
        args.pop("address")
    kw = VALIDATORS[kind]
    assert validation_errors(args, **kw) == []
    assert asyncio.run(run_partial(args, **kw)) == (None, sorted(args))


@pytest.mark.parametrize(("kind", "change", "early"), [
    ("model", {"age": -3}, "age: Input should be greater than or equal to 0"),
    ("model", {"email": "nope"}, "email: Value error, an email needs an @"),
    ("model", {"tags": [1, "x"]}, "tags.1: Input should be a valid integer"),
    ("model", {"address": {"city": "P", "zip": "1"}}, "address.zip: String should match pattern"),
    ("schema", {"tags": [1, 12]}, "tags.1: 12 is greater than the maximum of 9"),
    ("schema", {"age": "old"}, "age: 'old' is not of type 'integer'"),
    ("check", {"tags": ["a b"]}, "tags.0: no spaces allowed"),
])
def test_first_early_error_is_among_the_complete_errors(kind: str, change: dict[str, Any],
                                                        early: str) -> None:
    args = {**VALID, **change}
    kw = VALIDATORS[kind]
    if kind == "schema":
        args.pop("address")
    first, result = asyncio.run(run_partial(args, **kw))
    assert first is not None and first.startswith(early) and result is None
    assert first in validation_errors(args, **kw)


def test_whole_object_errors_are_found_by_finish() -> None:
    # a model validator across fields, a missing field, an extra field: only the whole tells
    young = {**VALID, "age": 10}
    assert asyncio.run(run_partial(young, model=Person))[0] == \
        "(root): Value error, minors have at most 2 tags"
    assert asyncio.run(run_partial({"name": "A", "age": 1}, model=Person))[0] == \
        "email: Field required"
    extra = {"name": "A", "age": 1, "x": 1}
    assert asyncio.run(run_partial(extra, schema=SCHEMA))[0] == \
        "(root): Additional properties are not allowed ('x' was unexpected)"


def test_invalid_early_field_stops_decoding(sched: Scheduler) -> None:
    saved: list[dict[str, Any]] = []

    def save(name: str, age: int, email: str, bio: str = "", notes: str = "") -> str:
        saved.append({"name": name, "age": age})
        return f"saved {name}"

    tool = validated_tool(save, model=Person, scheduler=sched)
    record = {"name": "Bob", "age": 200, "email": "bob@x.org",
              "bio": "Bob writes long biographies. " * 40, "notes": "More notes here. " * 40}
    text = "Saving it.\n<tool_call>" + json.dumps({"name": "save", "arguments": record}) + \
        "</tool_call>"
    replay = Replay(text, tokens_per_s=400, seed=2)
    session = sched.session(tools=[tool])
    turn = asyncio.run(run_turn(replay, ChatRequest([]), parser=get_parser("hermes"),
                                session=session))
    assert session.abort is not None and turn.abort is session.abort
    assert "age" in session.abort.reason
    assert session.abort.reason == "invalid arguments: age: Input should be less than or " \
        "equal to 150"
    total = len(Replay(text, tokens_per_s=None, seed=2).tokens(text))
    assert replay.emitted[0] < total / 2                # decoding stopped early
    assert turn.aborted_call is not None and not turn.aborted_call_complete
    with pytest.raises(InvalidArguments, match="age"):
        tool(**record)                                  # invoked directly: the same error
    assert saved == []
    assert tool(**{**record, "age": 40}) == "saved Bob"


async def test_async_tool_result_through_the_scheduler(sched: Scheduler) -> None:
    async def save(name: str, age: int, email: str) -> str:
        return f"{name}:{age}"

    tool = validated_tool(save, model=Person, scheduler=sched)
    args = {"name": "Eve", "age": 5, "email": "e@x"}
    session = sched.session(tools=[tool])
    session.handle(events(args))
    assert await tool(**args) == "Eve:5"
    assert sched.pending() == 0                         # the early result was handed over


records = st.fixed_dictionaries(
    {"name": st.sampled_from(["", "Al", "a b"]), "age": st.integers(-2, 160) | st.just("x"),
     "email": st.sampled_from(["a@b", "ab", "a @b"])},
    optional={"tags": st.lists(st.integers(-2, 12) | st.just("z"), max_size=5),
              "bio": st.sampled_from(["ok", "has space"]), "extra": st.just(1)})


@settings(max_examples=40, deadline=None)
@given(records, st.sampled_from(list(VALIDATORS)))
def test_partial_and_complete_agree_on_generated_records(args: dict[str, Any], kind: str) -> None:
    kw = VALIDATORS[kind]
    complete = validation_errors(args, **kw)
    first, result = asyncio.run(run_partial(args, **kw))
    if complete:
        assert first in complete and result is None
    else:
        assert first is None and result == sorted(args)
