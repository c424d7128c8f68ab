"""A line plot of one panel: a few series over steps, drawn with Plotext in braille dots.

The series come already cut to at most a couple of thousand points; here they are cut again to
what the plot's width can show (see ``_draw``), since more cannot be seen and each one costs
Plotext time.
The drawing is cached and only rebuilt when the data, the size or the theme changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.align import Align
from rich.text import Text
from textual_plotext import PlotextPlot

from tui.axes import nice_ticks, padded_range, tick_labels
from tui.series import ENVELOPE, MEAN, reduce_points

Color = tuple[int, int, int]


@dataclass(frozen=True)
class Line:
    label: str
    xs: list[float]
    ys: list[float]
    color: Color
    side: str = "left"  # which y axis: "left" or "right"
    mode: str = MEAN  # how many points become few: bucket means, or ENVELOPE (lowest and highest)


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
        self._version = 0
        self._cache_key: tuple | None = None
        self._cache: Text | None = None

    @property
    def lines(self) -> list[Line]:
        return self._lines

    def show(self, lines: list[Line], note: str = "", empty: str | None = None) -> None:
        """Replace the plotted lines; ``note`` goes on the bottom border (latest values)."""
        self._lines = [line for line in lines if line.xs]
        if empty is not None:
            self._empty = empty
        self.border_subtitle = note
        self._version += 1
        self.refresh()

    def render(self):
        if not self._lines:
            return Align.center(Text(self._empty, style="dim"), vertical="middle")
        key = (self.size, self._version, self.app.theme)
        if key != self._cache_key:
            self._draw()
            self._cache = super().render()
            self._cache_key = key
        return self._cache

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_figure()
        width = max(self.size.width, 16)
        all_x: list[float] = []
        sides: dict[str, list[float]] = {}
        for line in self._lines:
            # an envelope keeps two points per dot column; a mean line one per cell, which calms
            # per-step noise (throughput) without hiding a trend
            xs, ys = reduce_points(line.xs, line.ys, 4 * width if line.mode == ENVELOPE else width, line.mode)
            plt.plot(xs, ys, marker="braille", color=line.color, yside=line.side)  # legends live in borders
            all_x += (xs[0], xs[-1])
            sides.setdefault(line.side, []).extend((min(ys), max(ys)))
        x_lo, x_hi = min(all_x), max(all_x)
        if x_hi == x_lo:
            x_hi = x_lo + 1
        x_ticks = nice_ticks(x_lo, x_hi, max(3, width // 12))
        plt.xlim(x_lo, x_hi)
        plt.xticks(x_ticks, tick_labels(x_ticks, integer=self._integer_x))
        height_ticks = max(3, min(6, (self.size.height - 3) // 2))
        for side, values in sides.items():
            lo, hi = padded_range(values)
            y_ticks = nice_ticks(lo, hi, height_ticks)
            plt.ylim(lo, hi, yside=side)
            plt.yticks(y_ticks, tick_labels(y_ticks), yside=side)
