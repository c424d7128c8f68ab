"""Several runs side by side (a sweep of batch and sequence settings): a table of each run's
settings and results, and their loss and validation balanced-accuracy curves overlaid.

The x axis is the epoch, not the step: runs with different batch sizes take different numbers of
steps per epoch, and the epoch is where their curves can be compared."""

from __future__ import annotations

import statistics
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable

from tui import fmt
from tui.layout import Layout
from tui.state import RunSnapshot
from tui.transform import ema, to_wall_clock
from tui.view_options import ViewOptions
from tui.widgets.compare_detail import RunsSideBySide
from tui.widgets.events import EventLog
from tui.widgets.header import status_badge
from tui.widgets.legend import Legend
from tui.widgets.plot import Line, MetricPlot, PlotView

PALETTE = [(95, 160, 230), (245, 160, 60), (115, 190, 115), (225, 95, 95), (185, 140, 220),
           (80, 190, 190), (220, 200, 90), (240, 130, 190), (160, 160, 160), (170, 120, 70)]


def run_color(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def short_name(path: str) -> str:
    """A run's name before its first line: its directory (runs/NAME/metrics.jsonl) or file stem."""
    p = Path(path)
    return p.parent.name if p.name == "metrics.jsonl" and p.parent.name else p.stem


def unique_names(snaps: list[RunSnapshot | None], paths: list[str]) -> list[str]:
    """Each run's name for legends; a name used twice gets #2, #3."""
    names, seen = [], {}
    for snap, path in zip(snaps, paths):
        name = snap.info.run_name if snap is not None and snap.info and snap.info.run_name else short_name(path)
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return names


class RunsTable(DataTable):
    DEFAULT_CSS = """
    RunsTable {
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        height: auto;
        max-height: 14;
        &:focus { border: round $accent; }
    }
    """
    # fixed widths: columns do not jump as runs start (nor depend on when the table measured them)
    # wide enough for what fmt writes (lr 1.25e-05, loss 0.00417, batch 512×16, best 100.0% (ep 10),
    # elapsed 111:06:40); a longer value ends in "…", never silently cut (the name has the swatch too)
    COLUMNS = (("", 2), ("run", 9), ("status", 11), ("batch", 8), ("procs", 5), ("len", 5), ("lr", 8),
               ("step", 11), ("loss", 7), ("best val", 14), ("test", 6), ("samples/s", 9), ("GPU GB", 6),
               ("elapsed", 9))

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)  # space hides or shows the run under it
        self.border_title = "runs"
        self.border_subtitle = ("procs: processes · len: --max-length · loss: smoothed, last · val, test: balanced "
                                "accuracy · GPU: peak")
        for label, width in self.COLUMNS:  # here, not on mount: rows may arrive first
            self.add_column(label, key=label, width=width)

    def show(self, snaps: list[RunSnapshot | None], names: list[str], now: float, stall_after: float,
             hidden: frozenset[int] = frozenset()) -> None:
        """One row per run, updated in place (this runs every second); a hidden run is dimmed."""
        for i, (snap, name) in enumerate(zip(snaps, names)):
            swatch = Text("  " if i in hidden else "━━", style="rgb({},{},{})".format(*run_color(i)))
            label = Text(name, no_wrap=True, overflow="ellipsis", style="dim strike" if i in hidden else "")
            if snap is None or snap.info is None:
                cells = [swatch, label, status_badge("waiting")] + [""] * (len(self.COLUMNS) - 3)
            else:
                cells = [swatch, label, status_badge(snap.status(now, stall_after)),
                         *(Text(c, no_wrap=True, overflow="ellipsis") for c in self.cells(snap, now, stall_after))]
            key = str(i)
            if key not in self.rows:
                self.add_row(*cells, key=key)
                continue
            for (column, _), cell in zip(self.COLUMNS, cells):
                if str(self.get_cell(key, column)) != str(cell):
                    self.update_cell(key, column, cell)

    @staticmethod
    def cells(snap: RunSnapshot, now: float, stall_after: float) -> list[str]:
        config = snap.info.config
        best = snap.best_validation()
        test = [e for e in snap.evals if e.split == "test" and e.epoch > 0]
        throughput, peak = snap.recent_samples_per_s, snap.gpu_peak_gb  # every step's, not the plot's thinned
        batch = f"{config.get('batch_size')}" + (f"×{config['grad_accum']}" if config.get("grad_accum", 1) != 1 else "")
        return [
            batch, str(snap.info.world_size or 1), str(config.get("max_length", "—")), fmt.number(config.get("learning_rate")),
            f"{fmt.count(snap.step)}/{fmt.count(snap.total_steps)}" if snap.total_steps else fmt.count(snap.step),
            fmt.number(snap.last.get("loss_ema")),
            f"{fmt.score(best.balanced_accuracy)} (ep {best.epoch})" if best else "—",
            fmt.score(test[-1].balanced_accuracy) if test else "—",
            fmt.number(statistics.median(throughput)) if throughput else "—",
            fmt.number(peak) if peak is not None else "—",
            fmt.duration(snap.elapsed(now, stall_after)),
        ]


class CompareView(Vertical):
    DEFAULT_CSS = """
    CompareView {
        #curves { height: 1fr; }
        #compare-events { height: 9; }
        &.short #compare-events { height: 5; }
        &.compact #runs { max-height: 8; }
        #side-by-side { display: none; }
        &.page-1 #compare-events { display: none; }
        &.page-2 #runs, &.page-3 #runs { display: none; }
        &.page-2 #curves, &.page-3 #curves { display: none; }
        &.page-2 #legend, &.page-3 #legend { display: none; }
        &.page-2 #side-by-side { display: block; }
        &.page-2 #compare-events { display: none; }
        &.page-3 #compare-events { height: 1fr; }
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        # held, not queried: updates stay harmless while the app tears the screen down
        self._runs = RunsTable(id="runs")
        self._loss = MetricPlot("training loss (smoothed) by epoch", id="compare-loss", integer_x=False)
        self._bal = MetricPlot("validation balanced accuracy by epoch", id="compare-bal", integer_x=False,
                               empty="no validation yet")
        self._legend = Legend(id="legend")
        self._events = EventLog(id="compare-events")
        self._side = RunsSideBySide(id="side-by-side")
        self._options = ViewOptions()
        self._snaps: list[RunSnapshot | None] = []
        self._names: list[str] = []
        self._status: tuple | None = None

    def compose(self) -> ComposeResult:
        yield self._runs
        with Horizontal(id="curves"):
            yield self._loss
            yield self._bal
        yield self._legend
        yield self._side
        yield self._events

    def plot(self, name: str) -> MetricPlot:
        return {"loss": self._loss, "bal": self._bal}[name]

    def apply_layout(self, layout: Layout, options: ViewOptions) -> None:
        """Small terminals: page 1 the runs table and the plots (on a narrow one, one plot at a
        time: p), page 2 the runs side by side (every column whole), page 3 the events."""
        self._options = options
        compact = not layout.wide
        self.set_class(compact, "compact")
        self.set_class(layout.header_rows < 5, "short")
        self.set_class(compact and options.page == 1, "page-1")
        self.set_class(compact and options.page == 2, "page-2")
        self.set_class(compact and options.page == 3, "page-3")
        both = layout.plot_columns == 2
        self._loss.display = both or options.first_panel % 2 == 0
        self._bal.display = both or options.first_panel % 2 == 1

    def more_plots(self) -> bool:
        return not (self._loss.display and self._bal.display)

    def show_status(self, snaps: list[RunSnapshot | None], names: list[str], now: float, stall_after: float) -> None:
        self._status = (now, stall_after)
        self._runs.show(snaps, names, now, stall_after, self._options.hidden)
        self._show_side(snaps, names, now, stall_after)

    def _show_side(self, snaps: list[RunSnapshot | None], names: list[str], now: float, stall_after: float) -> None:
        if not self.has_class("page-2"):
            return  # not shown: not kept current either
        ready = [s is not None and s.info is not None for s in snaps]
        self._side.show(names, [label for label, _ in RunsTable.COLUMNS[3:]],
                        [RunsTable.cells(s, now, stall_after) if ok else None for s, ok in zip(snaps, ready)],
                        [s.status(now, stall_after) if ok else "waiting" for s, ok in zip(snaps, ready)])

    def run_at_cursor(self) -> int | None:
        return self._runs.cursor_row if self._runs.row_count else None

    def show_data(self, snaps: list[RunSnapshot | None], names: list[str], options: ViewOptions | None = None) -> None:
        self._snaps, self._names = snaps, names
        if options is not None:
            self._options = options
        self._draw(live=True)
        self._events.show_events(
            [(snap, name) for snap, name in zip(snaps, names) if snap is not None])

    def redraw(self, options: ViewOptions) -> None:
        self._options = options
        if self._status is not None:
            self._runs.show(self._snaps or [None] * self._runs.row_count, self._names, *self._status, options.hidden)
            if self._snaps:
                self._show_side(self._snaps, self._names, *self._status)
        if self._snaps:
            self._draw()

    def curves(self) -> tuple[list[Line], list[Line]]:
        """Each shown run's smoothed loss and validation balanced accuracy, x = epoch (or seconds)."""
        loss, bal = [], []
        options = self._options
        for i, (snap, name) in enumerate(zip(self._snaps, self._names)):
            if snap is None or i in options.hidden:
                continue
            steps, times = snap.series.get("time", ([], []))
            start = snap.info.started_at if snap.info and snap.info.started_at is not None else 0.0
            seconds = [t - start for t in times]

            def x_of(xs: list[float]) -> list[float]:
                if options.wall_clock:
                    return to_wall_clock(xs, steps, seconds) if steps else []
                return [x / snap.steps_per_epoch for x in xs]
            if options.smoothing in ("auto", "off"):
                xs, ys = snap.series.get("loss_ema" if options.smoothing == "auto" else "loss", ([], []))
            else:
                xs, raw = snap.series.get("loss", ([], []))
                ys = ema(xs, raw, float(options.smoothing))
            if snap.steps_per_epoch and xs:
                loss.append(Line(name, x_of(xs), ys, run_color(i)))
            val = [e for e in snap.evals if e.split == "validation" and e.balanced_accuracy is not None]
            if val and (snap.steps_per_epoch or options.wall_clock):
                xs = ([float(e.step) for e in val] if options.wall_clock
                      else [float(e.epoch) for e in val])
                bal.append(Line(name, x_of(xs) if options.wall_clock else xs,
                                [e.balanced_accuracy for e in val], run_color(i)))
        return loss, bal

    def x_extent(self) -> tuple[float, float] | None:
        xs = [x for line in sum(self.curves(), []) for x in (line.xs[:1] + line.xs[-1:])]
        return (min(xs), max(xs)) if xs else None

    def export_view(self) -> tuple[list, str, str, int]:
        loss, bal = self.curves()
        plots = [(self._loss.border_title, loss), (self._bal.border_title, bal)]
        x_label = "seconds since the start" if self._options.wall_clock else "epoch"
        return plots if loss or bal else [], x_label, "compare", len(self._names)

    def _draw(self, live: bool = False) -> None:
        options = self._options
        loss, bal = self.curves()
        view = PlotView(options.x_range, options.log_y, options.cursor, options.wall_clock)
        x_name = "time" if options.wall_clock else "epoch"
        smoothing = {"auto": "smoothed", "off": "raw"}.get(options.smoothing, f"smoothed {options.smoothing_label}")
        self._loss.border_title = f"training loss ({smoothing}) by {x_name}"
        self._bal.border_title = f"validation balanced accuracy by {x_name}"
        notes = []
        if options.cursor is not None:
            from tui.widgets.readout import values_at
            at = fmt.duration(options.cursor) if options.wall_clock else f"epoch {options.cursor:.2f}"
            notes = [at + ": " + " · ".join(values_at(options.cursor, [("", line) for line in loss]))]
        self._loss.show(loss, note=notes[0] if notes else "", view=view, live=live)
        self._bal.show(bal, view=view, live=live)
        shown = [i for i in range(len(self._names)) if i not in options.hidden]
        self._legend.show([self._names[i] for i in shown], [run_color(i) for i in shown])
