"""Timeline plots: runs of one transcript in different modes, one band per run, on a shared axis.

Each run gets a horizontal band labelled with its mode and latency. Inside it the ``decode``
span is one bar on the top lane and the ``tool`` spans are bars on the lanes below, overlapping
tool spans packed greedily onto separate lanes so that concurrent pieces are visible. A solid
vertical line marks each run's completion (``latency_s``), a dashed one its ``ideal_s`` where it
has one, and an aborted run says "decoding stopped early". matplotlib (Agg) is imported only when
a plot is drawn, so importing this module stays cheap. Example::

    from conveyor_integrations.bench.plot import plot_timeline
    png = plot_timeline("/tmp/monte_carlo.png", "codegen / monte_carlo @ 50 tok/s",
                        [sequential_run, partial_run])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .records import RunRecord, Span

__all__ = ["pack_lanes", "plot_timeline"]

_DECODE_COLOUR = "#4c72b0"
_TOOL_COLOUR = "#dd8452"
_ABORT_COLOUR = "#c44e52"
_LATENCY_COLOUR = "#222222"
_IDEAL_COLOUR = "#55a868"
_LABEL_CHARS = 28
_BAR_HEIGHT = 0.8
_BAND_GAP = 0.6
_CHAR_WIDTH_IN = 0.055
"""About how wide one character of the bar label font is, in inches (fontsize 7)."""


def pack_lanes(spans: Sequence[Span]) -> list[list[Span]]:
    """Spans on lanes, greedily: each (in start order) on the first lane that is free by then.

        >>> lanes = pack_lanes([Span("a", 0, 2), Span("b", 1, 3), Span("c", 2.5, 4)])
        >>> [[s.label for s in lane] for lane in lanes]
        [['a', 'c'], ['b']]
    """
    lanes: list[list[Span]] = []
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        for lane in lanes:
            if lane[-1].end <= span.start:
                lane.append(span)
                break
        else:
            lanes.append([span])
    return lanes


def _short(label: str, limit: int = _LABEL_CHARS) -> str:
    label = " ".join(label.split())
    return label if len(label) <= limit else label[:limit - 1] + "…"


def _band_label(run: RunRecord) -> str:
    text = f"{run.mode}  {run.latency_s:.2f} s"
    if run.ideal_s is not None:
        text += f"\n(ideal {run.ideal_s:.2f} s)"
    return text


def plot_timeline(path: str | Path, title: str, runs: Sequence[RunRecord]) -> Path:
    """Draw ``runs`` (one transcript, several modes) as a timeline PNG at ``path``; return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    path = Path(path)
    layouts = []
    for run in runs:
        decode = [s for s in run.spans if s.kind == "decode"]
        tool_lanes = pack_lanes(run.tool_spans())
        layouts.append((run, decode, tool_lanes, 1 + max(len(tool_lanes), 1)))
    total_lanes = sum(n for *_, n in layouts)
    x_max = max([1e-3] + [max([r.latency_s, r.decode_s, r.ideal_s or 0.0] +
                              [s.end for s in r.spans]) for r in runs]) * 1.08
    height = min(2.0 + 0.32 * total_lanes + 0.3 * len(runs), 30.0)
    fig, ax = plt.subplots(figsize=(10.0, height), dpi=120)
    width_in = 10.0 * 0.72                    # about the axes' share of the figure
    sec_per_char = x_max / width_in * _CHAR_WIDTH_IN

    def bar(lane_y: float, span: Span, colour: str, hatch: str | None = None) -> None:
        ax.barh(lane_y, max(span.end - span.start, x_max * 1e-3), left=span.start,
                height=_BAR_HEIGHT, color=colour, edgecolor="white", linewidth=0.5,
                hatch=hatch)
        fits = int((span.end - span.start) / sec_per_char) - 1
        if fits < min(4, len(span.label)):
            return                            # too short for its label: leave it bare
        text = _short(span.label, min(_LABEL_CHARS, fits))
        ax.text(span.start + sec_per_char * 0.5, lane_y, text, va="center", ha="left",
                fontsize=7, color="white", clip_on=True)

    y = 0.0
    ticks: list[float] = []
    tick_labels: list[str] = []
    for i, (run, decode, tool_lanes, n_lanes) in enumerate(layouts):
        top, bottom = y - 0.5, y + n_lanes - 0.5
        if i % 2:
            ax.axhspan(top - _BAND_GAP / 2, bottom + _BAND_GAP / 2, color="#f2f2f2", zorder=0)
        for span in decode:
            bar(y, span, _ABORT_COLOUR if run.aborted else _DECODE_COLOUR,
                "//" if run.aborted else None)
        for lane_no, lane in enumerate(tool_lanes, start=1):
            for span in lane:
                bar(y + lane_no, span, _TOOL_COLOUR)
        ax.vlines(run.latency_s, top, bottom, colors=_LATENCY_COLOUR, linewidth=1.8, zorder=3)
        if run.ideal_s is not None:
            ax.vlines(run.ideal_s, top, bottom, colors=_IDEAL_COLOUR, linewidth=1.5,
                      linestyles="dashed", zorder=3)
        if run.aborted:
            ax.plot([run.decode_s], [y], marker="X", color=_ABORT_COLOUR, markersize=9,
                    markeredgecolor="black", zorder=4)
            ax.annotate("decoding stopped early", (run.decode_s, y), xytext=(9, 0),
                        textcoords="offset points", va="center", fontsize=8,
                        color=_ABORT_COLOUR, fontweight="bold")
        ticks.append((top + bottom) / 2)
        tick_labels.append(_band_label(run) + (" — aborted" if run.aborted else ""))
        if i:
            ax.axhline(top - _BAND_GAP / 2, color="#999999", linewidth=0.8)
        y += n_lanes + _BAND_GAP

    ax.set_xlim(0.0, x_max)
    ax.set_ylim(y - _BAND_GAP - 0.5 + 0.1, -0.6)   # first run at the top
    ax.set_yticks(ticks)
    ax.set_yticklabels(tick_labels, fontsize=9)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("seconds since the request")
    ax.set_title(title, fontsize=11)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    handles: list[Any] = [Patch(color=_DECODE_COLOUR, label="decode"),
                          Patch(color=_TOOL_COLOUR, label="tool"),
                          Line2D([], [], color=_LATENCY_COLOUR, linewidth=1.8, label="done")]
    if any(r.ideal_s is not None for r in runs):
        handles.append(Line2D([], [], color=_IDEAL_COLOUR, linestyle="dashed", label="ideal"))
    if any(r.aborted for r in runs):
        handles.append(Patch(facecolor=_ABORT_COLOUR, hatch="//", label="decode (stopped early)"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12 * 4 / height),
              ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
