"""Shared fixtures: a fresh scheduler per test, checked for leaks when the test ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from conveyor_integrations.scheduler import Scheduler, set_default_scheduler
from conveyor_integrations.store import ResultStore


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    """A private scheduler, also installed as the default; closed and leak-checked after.

    It has a store of its own (not the process-wide ``SHARED`` one), so that the call ids a
    test claims ("c1", ...) are not remembered as claimed in the next test."""
    s = Scheduler(claim_timeout=5.0, store=ResultStore())
    previous = set_default_scheduler(s)
    before = {t.ident for t in threading.enumerate()}
    yield s
    s.close()
    set_default_scheduler(previous)   # None: the next default_scheduler() makes a fresh one
    for t in threading.enumerate():
        if t.ident not in before and t.name.startswith("conveyor"):
            t.join(timeout=5)
    leaked = [t.name for t in threading.enumerate()
              if t.ident not in before and t.name.startswith("conveyor") and t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


# the session-wide vLLM engine, server and fault-server fixtures, visible to every test folder
from tests.vllm_fixtures import *
