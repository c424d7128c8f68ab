"""The dashboard app: one run in full, or several runs compared.

A worker thread polls the metrics files (tui.watch, no Textual there) and posts one snapshot per
run as lines arrive (tui.messages); the UI keeps the newest snapshot of each run and redraws at
most a few times a second, so a burst of lines never freezes the screen. The clock is injected:
status (stalled?), elapsed time and ETA depend on "now", and tests fix it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.worker import get_current_worker

from tui.messages import RunUpdated
from tui.state import RunSnapshot
from tui.watch import RunWatcher
from tui.widgets.compare_view import CompareView, unique_names
from tui.widgets.help import HelpScreen
from tui.widgets.run_view import RunView
from tui.widgets.titlebar import TitleBar

DRAW_INTERVAL = 0.5  # seconds between redraws while lines stream in: plots cost CPU
TICK_INTERVAL = 1.0  # the header's clock: elapsed, ETA, stalled


class DashboardApp(App[None]):
    TITLE = "nli-qlora dashboard"
    CSS_PATH = "tui.tcss"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),  # a terminal user expects it to quit
        Binding("f", "toggle_follow", "follow on/off"),
        Binding("tab", "app.focus_next", "next panel", priority=True),
        Binding("question_mark", "help", "help", key_display="?"),
    ]

    def __init__(self, paths: list[Path], *, stall_after: float = 60.0, follow: bool = True,
                 clock: Callable[[], float] = time.time, poll_interval: float = 0.25) -> None:
        super().__init__()
        if not paths:
            raise ValueError("DashboardApp needs at least one metrics file")
        self.paths = [Path(p) for p in paths]
        self.stall_after = stall_after
        self.follow = follow
        self.clock = clock
        self.poll_interval = poll_interval
        self.latest: list[RunSnapshot | None] = [None] * len(self.paths)  # newest from the reader
        self.shown: list[RunSnapshot | None] = [None] * len(self.paths)  # what plots and tables show
        self._draw_timer = None
        self._last_draw = float("-inf")
        self._stop = threading.Event()

    @property
    def comparing(self) -> bool:
        return len(self.paths) > 1

    def compose(self) -> ComposeResult:
        # kept, not queried: while the help screen is up, a query would search that screen instead
        self._title = TitleBar(id="title")
        self._view = CompareView(id="view") if self.comparing else RunView(id="view")
        yield self._title
        yield self._view
        yield Footer()

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self._draw_title()
        self._tick()
        self.set_interval(TICK_INTERVAL, self._tick)
        self.call_after_refresh(self._read)  # every panel mounted and drawn once before data comes

    def on_unmount(self) -> None:
        self._stop.set()

    # --- the reader thread --------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="reader")
    def _read(self) -> None:
        worker = get_current_worker()
        watcher = RunWatcher(self.paths, clock=self.clock)
        while not (worker.is_cancelled or self._stop.is_set()):
            for index, snapshot in watcher.poll():
                self.post_message(RunUpdated(index, snapshot))
            if not watcher.busy:
                self._stop.wait(self.poll_interval)

    def on_run_updated(self, message: RunUpdated) -> None:
        self.latest[message.index] = message.snapshot
        if self._draw_timer is None:
            wait = self._last_draw + DRAW_INTERVAL - time.monotonic()
            self._draw_timer = self.set_timer(max(wait, 0.01), self._draw)  # a 0 s timer divides by zero

    # --- drawing ------------------------------------------------------------------------------
    def _draw(self) -> None:
        self._draw_timer = None
        self._last_draw = time.monotonic()
        for i, snap in enumerate(self.latest):
            if snap is None or (self.shown[i] is None and not snap.caught_up):
                continue  # still reading a long file: the title shows how far; plots wait for all of it
            shown = self.shown[i]
            if self.follow or shown is None or not shown.caught_up or shown.info is None:
                self.shown[i] = snap  # not following: freeze once there is a run to look at
        self._draw_title()
        if all(shown is None for shown in self.shown):
            return  # reading a long file: the title says how far; the rest waits (and costs nothing)
        view = self._view
        if self.comparing:
            view.show_data(self.shown, self._names())
        else:
            view.show_data(self.shown[0], self.follow)
        self._tick()

    def _tick(self) -> None:
        """Redraw what depends on the clock (and on the newest lines, even when paused)."""
        now = self.clock()
        view = self._view
        if self.comparing:
            view.show_status(self.latest, self._names(), now, self.stall_after)
        else:
            view.show_status(self.latest[0], now, self.stall_after)

    def _names(self) -> list[str]:
        return unique_names(self.latest, [str(p) for p in self.paths])

    def _draw_title(self) -> None:
        if self.comparing:
            what = f"comparing {len(self.paths)} runs"
        else:
            what = str(self.paths[0])
        unseen = sum(
            latest.lines - shown.lines for latest, shown in zip(self.latest, self.shown)
            if latest is not None and shown is not None and latest.generation == shown.generation)
        reading = [latest.read_fraction for latest, shown in zip(self.latest, self.shown)
                   if latest is not None and shown is None and not latest.caught_up]
        self._title.show(what, self.follow, unseen, min(reading) if reading else None)

    # --- keys ---------------------------------------------------------------------------------
    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        if self.follow:
            self._draw()
        else:
            self._draw_title()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
