"""The demo's closing picture: sequential against partial execution on one time axis.

Sequential (what agent frameworks do today) decodes the whole reply, then runs the program;
partial runs each statement while the rest is decoded, so only what is left after decoding
adds to the turn. Each is a bar of ``━`` (decoding) and ``█`` (the program running); under
partial, a row shows when each of its statements ran. Example::

    >>> from rich.console import Console
    >>> console = Console(width=80, color_system=None)
    >>> console.print(timeline(decode_s=10.0, ready_s=11.0, tool_after_s=4.0,
    ...                        ran=[(2.0, 3.5), (6.0, 8.0), (10.0, 11.0)], width=42))
    time          0 s            5 s            10 s
    sequential    ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━████████████  14.00 s
    partial       ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━███           11.00 s
      its tools         █████       ██████      ███
                  ━ decoding  █ the program running
    saved 3.00 s (21 %): the result was ready at 11.00 s instead of 14.00 s
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.text import Text

__all__ = ["bar_cells", "timeline"]

_LABEL = 14
_DECODE, _TOOL = ("━", "blue"), ("█", "yellow")


def bar_cells(spans: Sequence[tuple[float, float]], seconds_per_cell: float, cells: int
              ) -> list[bool]:
    """Which of ``cells`` cells (each ``seconds_per_cell`` long) a span covers any part of;
    a span too short for a cell of its own still marks one.

    >>> bar_cells([(0.0, 1.0), (2.2, 2.3)], 0.5, 6)
    [True, True, False, False, True, False]
    """
    out = [False] * cells
    for start, end in spans:
        first = min(cells - 1, max(0, int(start / seconds_per_cell)))
        last = max(first, min(cells - 1, int(max(start, end - 1e-9) / seconds_per_cell)))
        for i in range(first, last + 1):
            out[i] = True
    return out


def _axis(total: float, cells: int, per_cell: float) -> Text:
    step = next(s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1e9)
                if total / s <= max(1, cells // 8))
    line = [" "] * (cells + 8)
    k = 0
    while k * step <= total:
        label, at = f"{round(k * step, 1):g} s", int(k * step / per_cell)
        if at + len(label) <= len(line) and all(c == " " for c in line[max(0, at - 1):at]):
            line[at:at + len(label)] = label
        k += 1
    return Text(f"{'time':<{_LABEL}}" + "".join(line).rstrip(), style="dim")


def _bar(label: str, decode_cells: int, tool_cells: int, seconds: float, width: int) -> Text:
    text = Text(f"{label:<{_LABEL}}")
    text.append(_DECODE[0] * decode_cells, style=_DECODE[1])
    text.append(_TOOL[0] * tool_cells, style=_TOOL[1])
    text.append(" " * (width - decode_cells - tool_cells))
    text.append(f"  {seconds:5.2f} s", style="bold")
    return text


def timeline(*, decode_s: float, ready_s: float, tool_after_s: float,
             ran: Sequence[tuple[float, float]], width: int = 56) -> Group:
    """The picture for one demo turn (seconds from the turn's start).

    ``decode_s``: decoding ended; ``ready_s``: partial's result was ready; ``tool_after_s``:
    the program's run after decoding (sequential); ``ran``: when partial's statements ran.
    ``width``: cells of the longer bar.
    """
    sequential = decode_s + tool_after_s
    total = max(sequential, ready_s, 1e-6)
    per_cell = total / width
    decode_cells = round(decode_s / per_cell)
    seq_tool = max(1 if tool_after_s > 0 else 0, round(sequential / per_cell) - decode_cells)
    par_tool = max(1 if ready_s > decode_s else 0, round(ready_s / per_cell) - decode_cells)
    lanes = bar_cells(ran, per_cell, width)
    tools = Text(f"{'  its tools':<{_LABEL}}")
    tools.append("".join(_TOOL[0] if on else " " for on in lanes).rstrip(), style=_TOOL[1])
    legend = Text(" " * _LABEL)
    legend.append(_DECODE[0], style=_DECODE[1])
    legend.append(" decoding  ")
    legend.append(_TOOL[0], style=_TOOL[1])
    legend.append(" the program running")
    saved = sequential - ready_s
    share = 100 * saved / sequential if sequential > 0 else 0.0
    verdict = Text.assemble(
        (f"saved {saved:.2f} s ({share:.0f} %)", "bold green" if saved > 0 else "bold red"),
        f": the result was ready at {ready_s:.2f} s instead of {sequential:.2f} s")
    return Group(_axis(total, width, per_cell),
                 _bar("sequential", decode_cells, seq_tool, sequential, width),
                 _bar("partial", decode_cells, par_tool, ready_s, width),
                 tools, legend, verdict)
