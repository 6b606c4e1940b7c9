"""The user's tools of ``tests/bench/test_user_transcripts.py``; each counts its runs in CALLS.

``weather`` (a function) and ``spell`` (a LangChain tool) start on a ``start_on`` field,
``convert`` is not decorated, ``search`` runs once per query (``items=``); ``forecast`` starts
on ``city`` alone (a call that gives ``days`` runs it again), ``ticket`` answers differently each
time and ``broken`` raises.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from langchain_core.tools import tool

from conveyor_integrations import partial_tool

CALLS: Counter[str] = Counter()
"""Tool name -> how many times its body ran (``search``: once per run on a list of queries)."""


@partial_tool(start_on=["city"])
async def weather(city: str) -> str:
    """Tomorrow's forecast for a city."""
    CALLS["weather"] += 1
    await asyncio.sleep(0.05)
    return f"{city}: sunny"


def convert(celsius: float) -> str:
    """Celsius in Fahrenheit."""
    CALLS["convert"] += 1
    time.sleep(0.01)
    return f"{celsius * 9 / 5 + 32:g} F"


@partial_tool(start_on=["word"])
@tool
async def spell(word: str) -> str:
    """Spell a word letter by letter."""
    CALLS["spell"] += 1
    await asyncio.sleep(0.05)
    return "-".join(word)


@partial_tool(items="queries", combine="\n".join)
async def search(queries: list[str]) -> str:
    """Search the web for each query."""
    CALLS["search"] += 1
    await asyncio.sleep(0.02)
    return "\n".join(f"results for {q}" for q in queries)


@partial_tool(start_on=["city"])
async def forecast(city: str, days: int = 1) -> str:
    """The forecast for a city, some days ahead."""
    CALLS["forecast"] += 1
    await asyncio.sleep(0.05)
    return f"{city}: sunny for {days} days"


def ticket() -> str:
    """A new ticket number: a different result each time (the modes' results differ)."""
    CALLS["ticket"] += 1
    return f"ticket {CALLS['ticket']}"


def broken() -> str:
    """Always fails."""
    CALLS["broken"] += 1
    raise RuntimeError("the service is down")


TOOLS = [weather, convert, spell, search, forecast, ticket, broken]


def make_tools() -> list[object]:
    """The tools, from a function of no arguments."""
    return list(TOOLS)


def needs_args(prefix: str) -> list[object]:
    """Not a factory: it takes an argument."""
    return list(TOOLS)


def undocumented(x: int) -> int:
    return x


SINGLE = weather
SINGLE_LC = spell
EMPTY: list[object] = []
NOT_TOOLS = [weather, 42]
TWICE = [convert, convert]
LAMBDAS = [lambda x: x]
NO_DOCSTRING = [undocumented]
