"""The single-run dashboard: header and progress on top, plots left, evaluations and events right
(or, on a small terminal, one page at a time: see tui.layout)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import DataTable

from tui import fmt
from tui.layout import Layout, window
from tui.state import RunSnapshot
from tui.view_options import PANELS, ViewOptions
from tui.widgets.evals import ConfusionView, EvalTable
from tui.widgets.events import EventLog
from tui.widgets.header import RunHeader
from tui.widgets.panels import Panel, PanelBuilder
from tui.widgets.plot import Line, MetricPlot, PlotView
from tui.widgets.progress import RunProgress
from tui.widgets.readout import Readout


def settings_line(options: ViewOptions, x_name: str) -> str:
    """The view controls as set now, for the readout line."""
    parts = [f"smoothing {options.smoothing_label}", "log y" if options.log_y else "linear y",
             f"x {x_name}"]
    if options.x_range:
        lo, hi = options.x_range
        show = fmt.duration if options.wall_clock else fmt.count
        parts.append(f"zoom {show(lo)}–{show(hi)} (0 all)")
    return " · ".join(parts)


def _extent(lines: list[Line]) -> tuple[float, float] | None:
    """The x range that holds every line (None when they are empty or a single x)."""
    xs = [x for line in lines for x in (line.xs[:1] + line.xs[-1:])]
    return (min(xs), max(xs)) if xs and max(xs) > min(xs) else None


class RunView(Vertical):
    DEFAULT_CSS = """
    RunView {
        #body { height: 1fr; }
        #plots-page { width: 1fr; }
        #plots { grid-size: 2; grid-gutter: 0; height: 1fr; }
        #side { width: 54; }
        &.compact #side { width: 1fr; }
        &.narrow #progress PercentageStatus { display: none; }
        &.page-1 #side { display: none; }
        &.page-2 #plots-page, &.page-3 #plots-page { display: none; }
        &.page-2 #events { display: none; }
        &.page-3 #evals, &.page-3 #confusion { display: none; }
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        # held, not queried: updates stay harmless while the app tears the screen down
        self._header, self._progress = RunHeader(id="header"), RunProgress(id="progress")
        self._plots = {name: MetricPlot(title, id=f"plot-{name.replace('_', '-')}") for name, title in PANELS.items()}
        self._readout = Readout(id="readout")
        self._evals = EvalTable(id="evals")
        self._confusion = ConfusionView(id="confusion")
        self._events = EventLog(id="events")
        self._grid = Grid(id="plots")
        self._layout = Layout()
        self._options = ViewOptions()
        self._shown_panels: list[str] = []
        self._snap: RunSnapshot | None = None

    def compose(self) -> ComposeResult:
        yield self._header
        yield self._progress
        with Horizontal(id="body"):
            with Vertical(id="plots-page"):
                yield self._readout
                with self._grid:
                    yield from self._plots.values()
            with Vertical(id="side"):
                yield self._evals
                yield self._confusion
                yield self._events

    def plot(self, name: str) -> MetricPlot:
        return self._plots[name]

    @property
    def shown_panels(self) -> list[str]:
        return list(self._shown_panels)

    # --- layout: on resize and when the chosen plots change -----------------------------------
    def apply_layout(self, layout: Layout, options: ViewOptions) -> None:
        self._layout, self._options = layout, options
        self.set_class(not layout.wide, "compact")
        self.set_class(layout.narrow, "narrow")
        self.set_class(not layout.wide and options.page == 1, "page-1")
        self.set_class(not layout.wide and options.page == 2, "page-2")
        self.set_class(not layout.wide and options.page == 3, "page-3")
        self._header.styles.height = layout.header_rows
        shown = window(list(options.panels), options.first_panel, layout.plot_slots, layout.plot_columns)
        self._shown_panels = shown
        self._grid.styles.grid_size_columns = layout.plot_columns
        for name, plot in self._plots.items():
            plot.display = name in shown
            plot.styles.column_span = 2 if layout.plot_columns == 2 and shown and name == shown[0] == "loss" else 1
        used = sum(2 if self._plots[n].styles.column_span == 2 else 1 for n in shown)
        rows = max(1, -(-used // layout.plot_columns))
        if layout.plot_columns == 2 and used % 2 and shown:  # an odd one out fills its row
            self._plots[shown[-1]].styles.column_span = 2
        self._grid.styles.grid_size_rows = rows
        wide_loss = shown and shown[0] == "loss" and self._plots["loss"].styles.column_span == 2
        self._grid.styles.grid_rows = " ".join(["3fr"] + ["2fr"] * (rows - 1)) if wide_loss and rows > 2 else "1fr"  # loss taller

    def more_plots(self) -> bool:
        """Some chosen plots are not shown (p brings them in)."""
        return len(self._shown_panels) < len(self._options.panels)

    # --- always live ---------------------------------------------------------------------------
    def show_status(self, snap: RunSnapshot | None, now: float, stall_after: float) -> None:
        self._header.show(snap, now, stall_after)
        self._progress.show(snap)

    # --- frozen while not following -------------------------------------------------------------
    def show_data(self, snap: RunSnapshot, follow: bool, options: ViewOptions | None = None) -> None:
        self._snap = snap
        if options is not None:
            self._options = options
        self._draw_plots(live=True)
        self._evals.show(snap.evals, follow=follow)
        self._confusion.show(self._evals.eval_at_cursor())
        self._events.show(snap)

    def redraw(self, options: ViewOptions) -> None:
        """The view controls changed: the same data, drawn again."""
        self._options = options
        if self._snap is not None:
            self._draw_plots()
        else:
            self._readout.show(None, "", [], settings_line(options, self._x_name()))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._confusion.show(self._evals.eval_at_cursor())

    def _x_name(self) -> str:
        return "time since start" if self._options.wall_clock else "step"

    def panels(self) -> dict[str, Panel]:
        """Every panel of the shown snapshot, as the view controls draw it (the export uses this)."""
        if self._snap is None:
            return {}
        build = PanelBuilder(self._snap, self._options)
        return {name: build.build(name) for name in self._options.panels}

    def export_view(self) -> tuple[list, str, str, int]:
        """(plots as drawn now, x axis label, run name, step) for the PNG export."""
        if self._snap is None:
            return [], "", "", 0
        panels = self.panels()
        plots = [(panels[n].title, panels[n].lines) for n in self._shown_panels if n in panels]
        x_label = "seconds since the start" if self._options.wall_clock else "step"
        return plots, x_label, self._snap.name, self._snap.step

    def run_at_cursor(self) -> int | None:
        return None

    def x_extent(self) -> tuple[float, float] | None:
        return _extent([line for panel in self.panels().values() for line in panel.lines])

    def _draw_plots(self, live: bool = False) -> None:
        options = self._options
        panels = self.panels()
        # one x range for every plot (the whole run unless zoomed), so their steps line up
        x_range = options.x_range or _extent([line for panel in panels.values() for line in panel.lines])
        view = PlotView(x_range, options.log_y, options.cursor, options.wall_clock)
        for name in self._shown_panels:
            panel = panels.get(name)
            if panel is None:
                continue
            plot = self._plots[name]
            plot.border_title = panel.title
            plot.show(panel.lines, note=panel.note, empty=panel.empty, view=view, live=live)
        x_label = ""
        if options.cursor is not None:
            x_label = (f"at {fmt.duration(options.cursor)}" if options.wall_clock
                       else f"step {options.cursor:,.0f}")
        lines: list[tuple[str, Line]] = [(name, line) for name in self._shown_panels if name in panels
                                         for line in panels[name].lines]
        self._readout.show(options.cursor, x_label, lines, settings_line(options, self._x_name()))
