"""The compare view's page 2 on a small terminal: the runs table turned on its side, one column
per run and one row per setting or result, so that every number fits in 80 columns whole."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from tui.widgets.header import status_badge


class RunsSideBySide(DataTable):
    DEFAULT_CSS = """
    RunsSideBySide {
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        height: 1fr;
        &:focus { border: round $accent; }
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="none", zebra_stripes=True, **kw)
        self.border_title = "runs side by side"
        self.border_subtitle = "val, test: balanced accuracy · GPU: peak"
        self._key: tuple | None = None

    def show(self, names: list[str], labels: list[str], rows: list[list | None], statuses: list[str]) -> None:
        """``rows``: each run's cells (RunsTable's, after run and status), None before its first line."""
        key = (tuple(names), tuple(statuses), tuple(tuple(map(str, r)) if r else None for r in rows))
        if key == self._key:
            return
        self._key = key
        self.clear(columns=True)
        self.add_column("", key="field")
        for i, name in enumerate(names):
            self.add_column(name, key=str(i))
        self.add_row("status", *(status_badge(s) for s in statuses))
        for j, label in enumerate(labels):
            self.add_row(label, *(Text(str(r[j]) if r else "—", justify="right") for r in rows))
