"""One line under the title: the values of every plotted line at the cursor's step, and what the
view controls are set to (smoothing, log scale, zoomed range, x axis)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui import fmt
from tui.transform import nearest
from tui.widgets.plot import Line


def values_at(x: float, lines: list[tuple[str, Line]]) -> list[str]:
    """'label value' of each line's point nearest to x."""
    out = []
    for panel, line in lines:
        i = nearest(x, line.xs)
        if i is not None:
            out.append(f"{line.label} {fmt.number(line.ys[i])}")
    return out


class Readout(Static):
    DEFAULT_CSS = """
    Readout {
        height: 1;
        padding: 0 1;
        color: $text;
        background: $boost;
    }
    """

    def show(self, cursor: float | None, x_label: str, lines: list[tuple[str, Line]], settings: str) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        if cursor is not None:
            text.append(f"{x_label} ", style="bold")
            text.append(" · ".join(values_at(cursor, lines)))
            text.append("   ")
        text.append(settings, style="dim")
        self.update(text)
