"""The event log: run start and end, warnings, checkpoints, resumes, skipped steps, bad lines."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import RichLog

from tui import fmt
from tui.state import Event, RunSnapshot

LEVEL_STYLE = {"info": "", "good": "green", "warning": "yellow", "error": "bold red"}


class EventLog(RichLog):
    DEFAULT_CSS = """
    EventLog {
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        height: 1fr;
        min-height: 5;
        background: $surface;
        scrollbar-size-vertical: 1;
        overflow-x: hidden;
        overflow-y: auto;
        &:focus { border: round $accent; }
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(wrap=True, markup=False, highlight=False, auto_scroll=True, min_width=20, **kw)
        self.border_title = "events"
        self._written: list[tuple[Event, str]] = []
        self._runs: list[tuple[RunSnapshot, str]] = []
        self._wrapped_at = 0  # the width the written lines were wrapped to

    def on_resize(self) -> None:
        """Lines are wrapped when written: write them again at a new width (only then: with a
        long run's events, rewriting costs a tenth of a second)."""
        if self._runs and self.size.width != self._wrapped_at:
            self._wrapped_at = self.size.width
            self.clear()
            self._written = []
            self.show_events(self._runs)

    def show(self, snap: RunSnapshot, prefix: str = "") -> None:
        self.show_events([(snap, prefix)])

    def show_events(self, runs: list[tuple[RunSnapshot, str]]) -> None:
        """The events of one run, or of several (compare view: by wall time, each line prefixed
        with its run's name). Only new lines are written; when the file started over, all."""
        self._runs = runs
        width = max(len(prefix) for _, prefix in runs) if runs else 0
        merged = [(event, prefix.ljust(width)) for snap, prefix in runs for event in snap.events]
        if len(runs) > 1:  # file order within a run; wall time across runs
            merged.sort(key=lambda item: float("inf") if item[0].time is None else item[0].time)
        done = len(self._written)
        if len(runs) == 1 and len(merged) >= done and (not done or merged[done - 1][0] is self._written[-1][0]):
            pass  # one run's events only grow: the same objects, more of them (no O(history) compare)
        elif merged[:done] != self._written:
            self.clear()
            self._written = []
        self._wrapped_at = self.size.width
        new = merged[len(self._written):]
        for event, prefix in new:
            self.write(self._line(event, prefix), expand=True)
        if new and self.auto_scroll:
            # at once, and again once the written lines are laid out: lines written before the log
            # had its size are rendered later (RichLog defers them). `force`: until the scrollbar is
            # laid out Textual refuses the scroll (overflow), and the log would stay at the top
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
            self.call_after_refresh(self._newest_in_view)
        self._written = merged
        self.border_subtitle = _file_notes(runs)

    def watch_virtual_size(self, old, new) -> None:
        """More lines laid out (also those RichLog rendered late, once it knew its size): keep the
        newest in view while following."""
        if self.auto_scroll and new.height > old.height:
            self.call_after_refresh(self._newest_in_view)

    def _newest_in_view(self) -> None:
        if self.auto_scroll:
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    @staticmethod
    def _line(event: Event, prefix: str) -> Table:
        """Time in its own column, so a wrapped line hangs under its text."""
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(width=7, justify="right", style="dim")
        grid.add_column(ratio=1)
        text = Text()
        if prefix:
            text.append(f"{prefix}  ", style="bold")
        text.append(event.text, style=LEVEL_STYLE.get(event.level, ""))
        grid.add_row(fmt.duration(event.elapsed) if event.elapsed is not None else "", text)
        return grid


def _file_notes(runs: list[tuple[RunSnapshot, str]]) -> str:
    malformed = sum(s.malformed for s, _ in runs)
    pending = sum(1 for s, _ in runs if s.pending_bytes and s.caught_up)
    notes = []
    if malformed:
        notes.append(f"{malformed:,} malformed line{'s' if malformed != 1 else ''} skipped")
    if pending:
        notes.append("last line incomplete, waiting for its end")
    return " · ".join(notes)
