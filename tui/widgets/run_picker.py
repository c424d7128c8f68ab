"""The list of a folder's runs (``python -m tui FOLDER``; tui.run_index finds and sums them up):
enter opens the run under the cursor, space marks runs and c compares the marked ones, r reads the
folder again. The screen is dismissed with the metrics files to open."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tui import fmt
from tui.run_index import RunRow, scan
from tui.widgets.header import status_badge

COLUMNS = ("", "run", "preset / model", "state", "steps", "best val", "wall time")


def model_label(row: RunRow) -> str:
    info = row.snap.info if row.snap else None
    if info is None:
        return "—"
    preset = info.config.get("preset")
    model = str(info.model.get("name") or info.config.get("model") or "")
    short = model.rsplit("/", 1)[-1].removeprefix("builtin:")
    return str(preset) if preset else short or "—"


def cells(row: RunRow, marked: bool, now: float, stall_after: float) -> list:
    """The row's cells: counts with thousands separators, whole (columns size to their content)."""
    snap = row.snap
    mark = Text("✓" if marked else " ", style="bold green")
    name = Text.assemble(("★ " if row.chosen else "  ", "bold yellow"), row.name)
    if snap is None or snap.info is None:
        state = status_badge(row.sweep_status or "waiting") if snap is None else status_badge("waiting")
        score = fmt.score(row.score) if row.score is not None else "—"
        return [mark, name, model_label(row), state, "—", Text(score, justify="right"), "—"]
    steps = f"{snap.step:,} / {snap.total_steps:,}" if snap.total_steps else f"{snap.step:,}"
    best = fmt.score(row.score) if row.score is not None else "—"
    return [mark, name, model_label(row), status_badge(snap.status(now, stall_after)),
            Text(steps, justify="right"), Text(best, justify="right"),
            Text(fmt.duration(snap.elapsed(now, stall_after)), justify="right")]


class RunPicker(Screen[list[Path]]):
    DEFAULT_CSS = """
    RunPicker {
        #picker-title { height: 1; padding: 0 1; background: $panel; }
        #picker-hint { height: 1; padding: 0 1; color: $text-muted; }
        DataTable { height: 1fr; }
    }
    """
    BINDINGS = [
        Binding("enter", "open", "open", priority=True),  # before the table's own enter
        Binding("space", "mark", "mark"),
        Binding("c", "compare", "compare marked"),
        Binding("r", "rescan", "read again"),
    ]

    def __init__(self, folder: Path, *, clock: Callable[[], float] = time.time, stall_after: float = 60.0,
                 opened: list[Path] = ()) -> None:
        """``opened``: the runs open before (escape came back): the cursor goes to the first, and
        runs that were compared stay marked."""
        super().__init__()
        self._opened = list(opened)
        self.folder = folder
        self.clock = clock
        self.stall_after = stall_after
        self.rows: list[RunRow] = []
        self.marked: set[int] = set()
        self._table = DataTable(cursor_type="row", zebra_stripes=True, id="runs-list")

    def compose(self) -> ComposeResult:
        yield Static(id="picker-title")
        yield self._table
        yield Static("enter opens a run · space marks · c compares the marked · escape: back here",
                     id="picker-hint")
        yield Footer()

    def on_mount(self) -> None:
        for label in COLUMNS:
            self._table.add_column(label, key=label)
        self.action_rescan()
        self._table.focus()

    def action_rescan(self) -> None:
        """Read the folder again (runs finish, new ones start); the marks and the cursor stay."""
        marked_paths = {self.rows[i].path for i in self.marked}
        cursor = self._table.cursor_row
        if not self.rows and self._opened:  # the first reading after coming back
            marked_paths = set(self._opened) if len(self._opened) > 1 else set()
        self.rows = scan(self.folder)
        if cursor == 0 and self._opened:
            cursor = next((i for i, row in enumerate(self.rows) if row.path == self._opened[0]), 0)
        self.marked = {i for i, row in enumerate(self.rows) if row.path in marked_paths}
        self._fill()
        if self.rows:
            self._table.move_cursor(row=min(cursor, len(self.rows) - 1))
        chosen = next((row.name for row in self.rows if row.chosen), None)
        title = f"nli-qlora  {self.folder}: {len(self.rows):,} run{'' if len(self.rows) == 1 else 's'}"
        self.query_one("#picker-title", Static).update(title + (f" · chosen: {chosen}" if chosen else ""))

    def _fill(self) -> None:
        now = self.clock()
        self._table.clear()
        for i, row in enumerate(self.rows):
            self._table.add_row(*cells(row, i in self.marked, now, self.stall_after), key=str(i))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:  # a click
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        if self.rows:
            self.dismiss([self.rows[self._table.cursor_row].path])

    def action_mark(self) -> None:
        if not self.rows:
            return
        i = self._table.cursor_row
        self.marked ^= {i}
        self._table.update_cell(str(i), "", cells(self.rows[i], i in self.marked, 0, 0)[0])
        if i + 1 < len(self.rows):
            self._table.move_cursor(row=i + 1)

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two runs or more with space, then c compares them", severity="warning")
            return
        self.dismiss([self.rows[i].path for i in sorted(self.marked)])
