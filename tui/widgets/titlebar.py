"""The top line: what is being watched, and whether the view follows the file."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static


class TitleBar(Static):
    DEFAULT_CSS = """
    TitleBar {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text;
    }
    """

    _key: tuple | None = None

    def show(self, what: str, follow: bool, unseen_lines: int, reading: float | None = None) -> None:
        """``reading``: the fraction of a long file read so far, while the first read goes on."""
        key = (what, follow, unseen_lines, None if reading is None else int(100 * reading))
        if key == self._key:
            return
        self._key = key
        grid = Table.grid(expand=True)
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(justify="right", no_wrap=True)
        left = Text.assemble(("nli-qlora", "bold"), ("  ", ""), (what, ""))
        if reading is not None:
            right = Text(f"reading the file… {100 * reading:.0f}%", style="bold")
        elif follow:
            right = Text("● following", style="green")
        else:
            right = Text("❚❚ paused" + (f" · {unseen_lines:,} new lines" if unseen_lines else "")
                         + "  (f to follow)", style="bold yellow")
        grid.add_row(left, right)
        self.update(grid, layout=False)  # one line, always: no relayout of the screen
