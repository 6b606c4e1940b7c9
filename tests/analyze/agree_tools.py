"""Tools and messages of the agreement tests: a recorded agent run, then the benchmark on the
same messages. Each call ends its message (a trace that keeps only the final message, as OTLP
spans do, cannot say where in the text a call was). Tool time is a sleep (so the runs differ only in when tools start); the line
tool's time is proportional to each line's length, which is what the estimate assumes of a
streamed tool whose per-piece times the trace does not have."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from conveyor_integrations import partial_tool

SEARCH = ('I will look it up and keep a note.\n<tool_call>{"name": "web_search", "arguments": '
          '{"query": "population of Lyon", "k": 3}}</tool_call>\n<tool_call>{"name": '
          '"save_note", "arguments": {"text": "The user wants the population of Lyon and how it '
          'compares with the other large French cities; the census figure comes first, then '
          'the comparison table."}}</tool_call>')
SCRIPT = ('Now the numbers.\n<tool_call>{"name": "run_lines", "arguments": {"code": '
          '"load census table\\nfilter Lyon rows\\nsum population by year\\ncompare with Paris '
          'and Marseille\\nwrite the summary table\\n"}}</tool_call>')
ANSWER = "Lyon has about 520,000 people; the table compares it with Paris and Marseille."
MESSAGES = {"search": SEARCH, "script": SCRIPT}
RATE = 50.0
SEARCH_S = 1.0
NOTE_S = 0.05
PER_CHAR_S = 0.012


async def web_search(query: str, k: int = 3) -> str:
    """Search the web for ``query``."""
    await asyncio.sleep(SEARCH_S)
    return f"top {k} results for {query}"


async def save_note(text: str) -> str:
    """Keep ``text`` for later in the task."""
    await asyncio.sleep(NOTE_S)
    return "saved"


async def run_lines(code: str) -> str:
    """Run each line of ``code`` (a tiny line-oriented script)."""
    out = []
    for line in code.splitlines(keepends=True):
        await asyncio.sleep(PER_CHAR_S * len(line))
        out.append(f"ran {line.strip()}")
    return "; ".join(out)


def plain_tools() -> list[Any]:
    """The tools as the recorded (sequential) agent has them."""
    from langchain_core.tools import StructuredTool

    return [StructuredTool.from_function(coroutine=f, name=f.__name__,
                                         description=f.__doc__ or f.__name__)
            for f in (web_search, save_note, run_lines)]


def TOOLS() -> list[Any]:
    """The same tools decorated: what ``conveyor analyze --tools`` and the benchmark use."""
    search = partial_tool(web_search, start_on=["query"])
    lines = partial_tool(run_lines, stream="code", unit="line", combine="; ".join)
    return [search, plain_tools()[1], lines]


def write_transcripts(path: Path) -> Path:
    """The two tool-calling messages as ``conveyor bench --transcripts`` reads them."""
    path.write_text("".join(json.dumps({"name": name, "text": text,
                                        "tools": ["web_search", "save_note", "run_lines"]}) + "\n"
                            for name, text in MESSAGES.items()))
    return path
