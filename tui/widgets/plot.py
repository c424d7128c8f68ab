"""A line plot of one panel: a few series over steps, drawn with Plotext in braille dots.

The series come already cut to at most a couple of thousand points; here they are cut again to
what the plot's width can show (see ``_draw``), since more cannot be seen and each one costs
Plotext time.
The drawing is cached and only rebuilt when the data, the size or the theme changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from rich.align import Align
from rich.text import Text
from textual_plotext import PlotextPlot

from tui import fmt
from tui.axes import log_ticks, nice_ticks, padded_range, thin, tick_labels
from tui.series import MEAN, reduce_points
from tui.transform import clip, log10_points

Color = tuple[int, int, int]
MAX_STALE = 5.0  # seconds a picture may lag new points that would move it by less than a cell


@dataclass(frozen=True)
class Line:
    label: str
    xs: list[float]
    ys: list[float]
    color: Color
    side: str = "left"  # which y axis: "left" or "right"
    mode: str = MEAN  # how many points become few: bucket means, or ENVELOPE (lowest and highest)


@dataclass(frozen=True)
class PlotView:
    """How to draw: the x range shown (None: all), log y, a cursor line, x in seconds."""

    x_range: tuple[float, float] | None = None
    log_y: bool = False
    cursor: float | None = None
    x_is_time: bool = False


class MetricPlot(PlotextPlot, can_focus=True):
    DEFAULT_CSS = """
    MetricPlot {
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        height: 1fr;
        &:focus { border: round $accent; }
    }
    """

    def __init__(self, title: str, *, empty: str = "waiting for steps…", integer_x: bool = True,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = title
        self._empty = empty
        self._integer_x = integer_x
        self._lines: list[Line] = []
        self._view = PlotView()
        self.tick_labels: dict[str, list[str]] = {}  # as last drawn, per axis ("x", "left", "right")
        self._version = 0
        self._cache_key: tuple | None = None
        self._cache: Text | None = None
        self._drawn: tuple[list[Line], PlotView] | None = None  # what the cached picture shows
        self._drawn_at = 0.0

    @property
    def lines(self) -> list[Line]:
        return self._lines

    @property
    def view(self) -> PlotView:
        return self._view

    def show(self, lines: list[Line], note: str = "", empty: str | None = None, view: PlotView | None = None,
             live: bool = False) -> None:
        """Replace the plotted lines; ``note`` goes on the bottom border (latest values). The
        same lines and view again (the validation curve between evals) cost nothing. ``live``:
        new points of a followed run, which may wait (see _within_a_cell); a change of the
        view's settings is always drawn at once."""
        view = view or PlotView()
        lines = [line for line in lines if line.xs]
        self.border_subtitle = note
        if empty is not None and empty != self._empty:
            self._empty = empty
            self.refresh()
        if view == self._view and lines == self._lines:
            return
        wait = live and self._within_a_cell(lines, view)
        self._view, self._lines = view, lines
        if wait:
            return  # the picture would move by less than a cell: kept (the border is current)
        self._version += 1
        self.refresh()

    def _within_a_cell(self, lines: list[Line], view: PlotView) -> bool:
        """New points of a long run that would not move the picture by a cell: with 100,000
        steps on 80 cells, each cell is 1,250 steps, and redrawing for ten of them is wasted
        CPU. At most MAX_STALE seconds, and never when what is shown changed otherwise."""
        if self._drawn is None or time.monotonic() - self._drawn_at > MAX_STALE:
            return False
        drawn_lines, drawn_view = self._drawn
        if replace(view, x_range=None) != replace(drawn_view, x_range=None) or len(lines) != len(drawn_lines):
            return False
        cells = max(self.size.width - 8, 1)
        if (view.x_range is None) != (drawn_view.x_range is None):
            return False
        if view.x_range is not None:
            (lo, hi), (d_lo, d_hi) = view.x_range, drawn_view.x_range
            if lo != d_lo or hi - lo <= 0 or (hi - d_hi) * cells >= hi - lo:
                return False
        for new, old in zip(lines, drawn_lines):
            if new.label != old.label or new.side != old.side or not new.xs or not old.xs:
                return False
            span = new.xs[-1] - new.xs[0]
            grew = new.xs[-1] - old.xs[-1]
            if new.xs[0] != old.xs[0] or span <= 0 or grew <= 0 or grew * cells >= span:
                return False
        return True

    def render(self):
        if not self._lines:
            return Align.center(Text(self._empty, style="dim"), vertical="middle")
        key = (self.size, self._version, self.app.theme)
        if key != self._cache_key:
            self._drawn, self._drawn_at = (self._lines, self._view), time.monotonic()
            drawn = self._draw()
            self._cache = super().render() if drawn else Align.center(
                Text("nothing to draw here (log scale: no positive values)" if self._view.log_y
                     else "no points in this range", style="dim"), vertical="middle")
            self._cache_key = key
        return self._cache

    def _draw(self) -> bool:
        """Plot what the view shows, each line cut to the range and then to the width (more
        points than dots cannot be seen, and each costs Plotext time). False: nothing to plot."""
        plt = self.plt
        plt.clear_figure()
        view = self._view
        width = max(self.size.width, 16)
        lo, hi = view.x_range if view.x_range else (None, None)
        all_x: list[float] = []
        sides: dict[str, list[float]] = {}
        for line in self._lines:
            xs, ys = clip(line.xs, line.ys, lo, hi)
            if view.log_y:
                xs, ys = log10_points(xs, ys)
            if not xs:
                continue
            # what the width can show, whatever the history: an envelope one low and one high point
            # per two cells, a mean line one point per cell (which calms per-step noise without
            # hiding a trend). Plotext's cost grows with the points, so this bounds a redraw's cost.
            xs, ys = reduce_points(xs, ys, width, line.mode)
            plt.plot(xs, ys, marker="braille", color=line.color, yside=line.side)  # legends live in borders
            all_x += (xs[0], xs[-1])
            sides.setdefault(line.side, []).extend((min(ys), max(ys)))
        if not all_x:
            return False
        x_lo, x_hi = (lo, hi) if view.x_range else (min(all_x), max(all_x))
        if x_hi == x_lo:
            x_hi = x_lo + 1
        plt.xlim(x_lo, x_hi)
        x_count = max(2, width // 10)
        if view.x_is_time:
            unit = 60.0 if x_hi - x_lo > 180 else 1.0  # round minutes, or seconds for short spans
            x_ticks = [t * unit for t in nice_ticks(x_lo / unit, x_hi / unit, x_count, integer=True)]
            x_labels = [fmt.duration(t) for t in x_ticks]
        else:
            x_ticks = nice_ticks(x_lo, x_hi, x_count, integer=self._integer_x)
            x_labels = tick_labels(x_ticks, integer=self._integer_x)
        plt.xticks(x_ticks, x_labels)
        self.tick_labels = {"x": x_labels}
        if view.cursor is not None and x_lo <= view.cursor <= x_hi:
            plt.vline(view.cursor, color=(200, 200, 200))
        # rows of dots: the x axis takes two of the content's rows; two rows a label, so no
        # two labels land on one row (Plotext would print them out of order)
        y_count = max(2, min(6, (self.size.height - 2) // 2))
        for side, values in sides.items():
            y_lo, y_hi = padded_range(values)
            if view.log_y:
                y_ticks, labels = log_ticks(y_lo, y_hi, y_count)
                keep = set(thin(y_ticks, y_count))
                labels = [label for tick, label in zip(y_ticks, labels) if tick in keep]
                y_ticks = [tick for tick in y_ticks if tick in keep]
            else:
                y_ticks = thin(nice_ticks(y_lo, y_hi, y_count), y_count)
                labels = tick_labels(y_ticks)
            plt.ylim(y_lo, y_hi, yside=side)
            plt.yticks(y_ticks, labels, yside=side)
            self.tick_labels[side] = labels
        return True
