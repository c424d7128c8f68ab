"""Export what the dashboard shows: the current view as a PNG (matplotlib, imported here and only
when exporting: the dashboard itself never pays for it) and the series as CSV.

No Textual here. A plot is (title, lines); a line is anything with label, xs, ys, color (RGB
0-255) and side ("left"/"right"), which is what tui.widgets.plot.Line holds. The CSV has every
step of the file at full resolution (re-read, not the downsampled view), within the step range.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Sequence

from tui.state import SERIES_NAMES, RunState
from tui.tail import FileTail


def safe_name(text: str) -> str:
    """A run name as a file name: letters, digits, dot, dash and underscore."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def write_png(path: Path, plots: Sequence[tuple[str, Sequence]], *, x_label: str, log_y: bool = False,
              x_range: tuple[float, float] | None = None, title: str = "") -> Path:
    """One subplot per plot, two columns, the lines in their dashboard colors."""
    import matplotlib
    matplotlib.use("Agg")  # no display needed; set before pyplot is imported
    import matplotlib.pyplot as plt

    columns = 2 if len(plots) > 1 else 1
    rows = max(1, math.ceil(len(plots) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 3.2 * rows), squeeze=False)
    for ax, (plot_title, lines) in zip(axes.flat, plots):
        right = None
        for line in lines:
            target = ax
            if getattr(line, "side", "left") == "right":
                right = right or ax.twinx()
                target = right
            ys = [y if (y > 0 or not log_y) else math.nan for y in line.ys]
            target.plot(line.xs, ys, label=line.label, color=tuple(c / 255 for c in line.color), linewidth=1)
            if log_y:
                target.set_yscale("log")
        ax.set_title(re.sub(r"\[[^\]]*\]", "", plot_title).replace("━", "").strip(), fontsize=10)
        ax.set_xlabel(x_label)
        if x_range:
            ax.set_xlim(*x_range)
        handles, labels = ax.get_legend_handles_labels()
        if right is not None:
            h2, l2 = right.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        if labels:
            ax.legend(handles, labels, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(plots):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def read_run(metrics: Path) -> RunState:
    """The whole file folded again, every point kept (RunState's series hold them all)."""
    tail, state = FileTail(metrics), RunState(source=str(metrics))
    while True:
        got = tail.poll()
        state.feed(got.lines)
        if not got.more:
            state.snapshot()  # folds the last pending rows
            return state


def write_csv(path: Path, runs: Sequence[tuple[str, Path]], x_range: tuple[float, float] | None = None) -> Path:
    """One row per run and step: run, step, then every step metric (empty when null)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["run", "step", *SERIES_NAMES])
        for name, metrics in runs:
            state = read_run(metrics)
            rows: dict[float, dict[str, float]] = {}
            for series_name, series in state.series.items():
                for x, y in zip(series.xs, series.ys):
                    if x_range is None or x_range[0] <= x <= x_range[1]:
                        rows.setdefault(x, {})[series_name] = y
            for step in sorted(rows):
                values = rows[step]
                out.writerow([name, int(step), *(repr(values[n]) if n in values else "" for n in SERIES_NAMES)])
    return path
