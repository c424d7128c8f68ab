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

from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from tui import export, transform
from tui.layout import MIN_HEIGHT, MIN_WIDTH, Layout, layout_for
from tui.messages import RunUpdated
from tui.state import RunSnapshot
from tui.view_options import ViewOptions
from tui.watch import RunWatcher
from tui.widgets.chooser import MetricChooser
from tui.widgets.compare_view import CompareView, unique_names
from tui.widgets.help import HelpScreen
from tui.widgets.run_picker import RunPicker
from tui.widgets.run_view import RunView
from tui.widgets.titlebar import TitleBar

DRAW_INTERVAL = 0.5  # seconds between redraws while lines stream in: plots cost CPU
TICK_INTERVAL = 1.0  # the header's clock: elapsed, ETA, stalled
ZOOM = 0.5  # + halves the x range shown, - doubles it
PAN = 0.5  # [ and ] move it by half its width
CURSOR_STEPS = 40  # , and . move the cursor by 1/40 of the range shown


class DashboardApp(App[None]):
    TITLE = "nli-qlora dashboard"
    CSS_PATH = "tui.tcss"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),  # a terminal user expects it to quit
        Binding("f", "toggle_follow", "follow"),
        Binding("tab", "app.focus_next", "next panel", show=False, priority=True),
        Binding("m", "choose_metrics", "metrics"),
        Binding("p", "next_plot", "more"),
        Binding("1", "page(1)", "plots"),
        Binding("2", "page(2)", "tables"),
        Binding("3", "page(3)", "events"),
        Binding("s", "smoothing", "smoothing", show=False),
        Binding("l", "log_scale", "log y", show=False),
        Binding("plus,equals_sign", "zoom(0.5)", "zoom in", show=False),
        Binding("minus", "zoom(2)", "zoom out", show=False),
        Binding("left_square_bracket", "pan(-1)", "earlier", show=False),
        Binding("right_square_bracket", "pan(1)", "later", show=False),
        Binding("0", "reset_range", "all steps", show=False),
        Binding("c", "cursor", "cursor", show=False),
        Binding("comma", "move_cursor(-1)", "cursor left", show=False),
        Binding("full_stop", "move_cursor(1)", "cursor right", show=False),
        Binding("w", "wall_clock", "wall clock", show=False),
        Binding("space", "hide_run", "hide/show run", show=False),
        Binding("e", "export", "export"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("escape,backspace", "back", "runs", key_display="esc"),
    ]
    PICKER_ACTIONS = ("quit", "help", "focus_next")  # the keys of the app that work over the list

    def __init__(self, paths: list[Path], *, stall_after: float = 60.0, follow: bool = True,
                 clock: Callable[[], float] = time.time, poll_interval: float = 0.25,
                 folder: Path | None = None) -> None:
        """``folder``: a folder of runs, listed first (tui.widgets.run_picker); ``paths`` are then
        what opens when the list is left (escape), and may be empty."""
        super().__init__()
        if not paths and folder is None:
            raise ValueError("DashboardApp needs at least one metrics file")
        self.folder = folder
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
        self.options = ViewOptions()
        self.layout = Layout()
        self.export_dir = Path(".")  # where e writes its PNG and CSV
        self.exported: tuple[Path, Path] | None = None  # the files of the last export

    @property
    def comparing(self) -> bool:
        return len(self.paths) > 1

    def compose(self) -> ComposeResult:
        # kept, not queried: while the help screen is up, a query would search that screen instead
        self._title = TitleBar(id="title")
        self._view = CompareView(id="view") if self.comparing else RunView(id="view")
        self._too_small = Static(id="too-small")
        self._too_small.display = False
        yield self._title
        yield self._view
        yield self._too_small
        yield Footer()

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self._arrange()
        self._draw_title()
        self._tick()
        self.set_interval(TICK_INTERVAL, self._tick)
        if self.folder is not None:
            self._show_picker()
        else:
            self.call_after_refresh(self._read)  # every panel mounted and drawn once before data comes

    def on_unmount(self) -> None:
        self._stop.set()

    # --- the reader thread --------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="reader")
    def _read(self) -> None:
        worker = get_current_worker()
        watcher = RunWatcher(self.paths, clock=self.clock)
        stop = self._stop  # this reader's: opening other runs sets it and makes a new one
        while not (worker.is_cancelled or stop.is_set()):
            for index, snapshot in watcher.poll():
                self.post_message(RunUpdated(index, snapshot))
            if not watcher.busy:
                stop.wait(self.poll_interval)

    def on_run_updated(self, message: RunUpdated) -> None:
        if message.index >= len(self.paths) or message.snapshot.source != str(self.paths[message.index]):
            return  # from the reader of runs no longer open (the list opened others)
        self.latest[message.index] = message.snapshot
        if self.shown[message.index] is None and message.snapshot.caught_up:
            if self._draw_timer is not None:
                self._draw_timer.stop()
            self._draw()  # the file is all read: its first full picture at once, not at the next slot
        elif self._draw_timer is None:
            wait = self._last_draw + DRAW_INTERVAL - time.monotonic()
            self._draw_timer = self.set_timer(max(wait, 0.01), self._draw)  # a 0 s timer divides by zero

    # --- the list of a folder's runs -----------------------------------------------------------
    def _show_picker(self) -> None:
        def chosen(paths: list[Path] | None) -> None:
            if paths:
                self.run_worker(self.open_runs(paths), group="open", exclusive=True)
        self.push_screen(RunPicker(self.folder, clock=self.clock, stall_after=self.stall_after, opened=self.paths),
                         chosen)

    async def open_runs(self, paths: list[Path]) -> None:
        """Show these runs instead of the ones open now: a new view, a new reader."""
        self._stop.set()  # the old reader ends; what it still sends is dropped (on_run_updated)
        self._stop = threading.Event()
        if self._draw_timer is not None:
            self._draw_timer.stop()
            self._draw_timer = None
        self.paths = [Path(p) for p in paths]
        self.latest, self.shown = [None] * len(paths), [None] * len(paths)
        self.options = ViewOptions()
        old, self._view = self._view, CompareView(id="view") if self.comparing else RunView(id="view")
        await old.remove()
        await self.mount(self._view, after=self._title)
        self._arrange()
        self._draw_title()
        self._tick()
        self._read()

    def action_back(self) -> None:
        """Escape or backspace: from the runs of a folder back to its list."""
        self._stop.set()
        self._show_picker()

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
            view.show_data(self.shown, self._names(), self.options)
        else:
            view.show_data(self.shown[0], self.follow, self.options)
        self._tick()

    def _tick(self) -> None:
        """Redraw what depends on the clock (and on the newest lines, even when paused)."""
        if not self.paths:
            return
        now = self.clock()
        view = self._view
        if self.comparing:
            view.show_status(self.latest, self._names(), now, self.stall_after)
        else:
            view.show_status(self.latest[0], now, self.stall_after)

    def _names(self) -> list[str]:
        return unique_names(self.latest, [str(p) for p in self.paths])

    def _draw_title(self) -> None:
        if not self.paths:
            return
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

    # --- layout -------------------------------------------------------------------------------
    def on_resize(self, event: events.Resize) -> None:
        self._arrange(event.size)

    def _arrange(self, size=None) -> None:
        width, height = size or self.size
        self.layout = layout = layout_for(width, height, readout=True)
        self._too_small.display = layout.too_small
        self._view.display = self._title.display = not layout.too_small
        if layout.too_small:
            self._too_small.update(f"terminal too small: {width}×{height}, the dashboard needs at least "
                                   f"{MIN_WIDTH}×{MIN_HEIGHT} (q quits)")
            return
        self._view.apply_layout(layout, self.options)
        self._view.redraw(self.options)
        self.refresh_bindings()

    def _set(self, options: ViewOptions, relayout: bool = False) -> None:
        """New view choices: drawn at once, from what is shown (not following keeps it still)."""
        self.options = options
        if relayout:
            self._arrange()
        else:
            self._view.redraw(options)

    # --- view controls ------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Keys that do nothing in this view or at this size are left out of the footer."""
        if isinstance(self.screen, RunPicker):
            return action in self.PICKER_ACTIONS
        if action == "back":
            return self.folder is not None
        if action == "choose_metrics":
            return not self.comparing
        if action == "hide_run":
            return self.comparing
        if action == "page":
            return not self.layout.wide and not self.layout.too_small
        if action == "next_plot":
            return self._view.more_plots()
        return True

    def action_choose_metrics(self) -> None:
        def chosen(panels: tuple[str, ...] | None) -> None:
            if panels:
                self._set(self.options.with_(panels=panels, first_panel=0, page=1), relayout=True)
        self.push_screen(MetricChooser(self.options.panels), chosen)

    def action_next_plot(self) -> None:
        self._set(self.options.with_(first_panel=self.options.first_panel + 1, page=1), relayout=True)

    def action_page(self, page: int) -> None:
        self._set(self.options.with_(page=page), relayout=True)

    def action_smoothing(self) -> None:
        self._set(self.options.next_smoothing())

    def action_log_scale(self) -> None:
        self._set(self.options.with_(log_y=not self.options.log_y))

    def action_wall_clock(self) -> None:  # another x unit: range and cursor start over
        self._set(self.options.with_(wall_clock=not self.options.wall_clock, x_range=None, cursor=None))

    def _span(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        full = self._view.x_extent()
        if full is None or full[1] <= full[0]:
            return None
        return self.options.x_range or full, full

    def action_zoom(self, factor: float) -> None:
        spans = self._span()
        if spans:
            span, full = spans
            self._set(self.options.with_(x_range=transform.zoom(span, full, factor, self.options.cursor)))

    def action_pan(self, direction: int) -> None:
        spans = self._span()
        if spans and self.options.x_range:
            span, full = spans
            self._set(self.options.with_(x_range=transform.shift(span, full, direction * PAN * (span[1] - span[0]))))

    def action_reset_range(self) -> None:
        self._set(self.options.with_(x_range=None))

    def action_cursor(self) -> None:
        spans = self._span()
        if self.options.cursor is not None or not spans:
            self._set(self.options.with_(cursor=None))
        else:
            lo, hi = spans[0]
            self._set(self.options.with_(cursor=round((lo + hi) / 2)))

    def action_move_cursor(self, direction: int) -> None:
        spans = self._span()
        if not spans:
            return
        lo, hi = spans[0]
        start = self.options.cursor if self.options.cursor is not None else (lo + hi) / 2
        move = max((hi - lo) / CURSOR_STEPS, 1.0 if not self.comparing else 0.0)
        self._set(self.options.with_(cursor=min(max(start + direction * move, lo), hi)))

    def action_hide_run(self) -> None:
        index = self._view.run_at_cursor()
        if index is not None:
            self._set(self.options.toggle_hidden(index))

    # --- export -------------------------------------------------------------------------------
    def action_export(self) -> None:
        plots, x_label, name, step = self._view.export_view()
        if not plots:
            self.notify("nothing to export yet", severity="warning")
            return
        base = self.export_dir / f"dashboard-{export.safe_name(name)}-{step}"
        runs = [(n, p) for i, (n, p) in enumerate(zip(self._names(), self.paths)) if i not in self.options.hidden]
        self._export(base, plots, x_label, runs)

    @work(thread=True, exclusive=True, group="export")
    def _export(self, base: Path, plots, x_label: str, runs) -> None:
        """In a thread: matplotlib's import and the full re-read of the file take a second or two."""
        options = self.options
        try:
            png = export.write_png(base.with_suffix(".png"), plots, x_label=x_label, log_y=options.log_y,
                                   x_range=options.x_range, title=", ".join(n for n, _ in runs))
            step_range = None if (options.wall_clock or self.comparing) else options.x_range
            table = export.write_csv(base.with_suffix(".csv"), runs, step_range)
        except (OSError, ImportError, ValueError) as err:
            self.call_from_thread(self.notify, f"export failed: {err}", severity="error")
            return
        self.call_from_thread(self.notify, f"wrote {png} and {table}")
        self.exported = (png, table)
