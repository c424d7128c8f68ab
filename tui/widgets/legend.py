"""One line naming each run in its color: the legend of the compare view's plots.

Plotext draws its legend inside the plot's top-left corner, exactly where loss curves start, so
the legend lives under the plots instead."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class Legend(Static):
    DEFAULT_CSS = """
    Legend {
        height: auto;
        padding: 0 2;
    }
    """

    def show(self, names: list[str], colors: list[tuple[int, int, int]]) -> None:
        text = Text()
        for name, color in zip(names, colors):
            text.append("━━ ", style="bold rgb({},{},{})".format(*color))
            text.append(name)
            text.append("    ")
        self.update(text)
