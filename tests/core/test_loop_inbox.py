"""Calls posted to a loop from another thread: in order, one wake-up per batch, none lost."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from conveyor_integrations.loop_inbox import inbox_for

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("_VAR", default="unset")


def _run_posts(post: object) -> tuple[list[object], asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    seen: list[object] = []

    def poster() -> None:
        _VAR.set("poster's")
        post(inbox_for(loop), seen)            # type: ignore[operator]
        inbox_for(loop).post(loop.stop)

    t = threading.Thread(target=poster)
    t.start()
    loop.run_forever()
    t.join()
    return seen, loop


def test_calls_run_in_order_in_an_empty_context() -> None:
    def post(inbox, seen):
        for i in range(500):
            inbox.post(seen.append, i)
        inbox.post(lambda: seen.append(_VAR.get()))

    seen, loop = _run_posts(post)
    loop.close()
    assert seen == [*range(500), "unset"]


def test_a_batch_wakes_the_loop_once() -> None:
    wakes = 0
    loop = asyncio.new_event_loop()
    real = loop.call_soon_threadsafe

    def counting(*args, **kwargs):
        nonlocal wakes
        wakes += 1
        return real(*args, **kwargs)

    loop.call_soon_threadsafe = counting       # type: ignore[method-assign]
    seen: list[int] = []

    def poster() -> None:
        for i in range(100):                   # posted before the loop runs: one pending wake
            inbox_for(loop).post(seen.append, i)
        inbox_for(loop).post(loop.stop)

    t = threading.Thread(target=poster)
    t.start()
    t.join()
    loop.run_forever()
    loop.close()
    assert seen == list(range(100))
    assert wakes == 1


def test_a_failing_call_is_reported_and_the_rest_still_run() -> None:
    errors: list[dict[str, object]] = []

    def post(inbox, seen):
        inbox.loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        inbox.post(seen.append, 1)
        inbox.post(lambda: 1 / 0)
        inbox.post(seen.append, 2)

    seen, loop = _run_posts(post)
    loop.close()
    assert seen == [1, 2]
    assert isinstance(errors[0]["exception"], ZeroDivisionError)


def test_posting_to_a_closed_loop_raises_and_keeps_nothing() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    inbox = inbox_for(loop)
    with pytest.raises(RuntimeError):
        inbox.post(print, "never")
    assert inbox._inbox == [] and not inbox._armed
