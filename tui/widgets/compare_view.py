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
from tui.state import RunSnapshot
from tui.widgets.events import EventLog
from tui.widgets.header import status_badge
from tui.widgets.legend import Legend
from tui.widgets.plot import Line, MetricPlot

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
    COLUMNS = (("", 2), ("run", 16), ("status", 11), ("batch", 5), ("procs", 5), ("max len", 7), ("lr", 7),
               ("step", 11), ("loss", 6), ("best val", 12), ("test", 6), ("samples/s", 9), ("GPU GB", 6),
               ("elapsed", 7))

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="none", zebra_stripes=True, **kw)  # nothing to pick: no loud cursor
        self.border_title = "runs"
        self.border_subtitle = "procs: processes · loss: smoothed, last · val, test: balanced accuracy · GPU: peak"
        for label, width in self.COLUMNS:  # here, not on mount: rows may arrive first
            self.add_column(label, key=label, width=width)

    def show(self, snaps: list[RunSnapshot | None], names: list[str], now: float, stall_after: float) -> None:
        """One row per run, updated in place (this runs every second)."""
        for i, (snap, name) in enumerate(zip(snaps, names)):
            swatch = Text("━━", style="rgb({},{},{})".format(*run_color(i)))
            label = Text(name, no_wrap=True, overflow="ellipsis")
            if snap is None or snap.info is None:
                cells = [swatch, label, status_badge("waiting")] + [""] * (len(self.COLUMNS) - 3)
            else:
                cells = [swatch, label, status_badge(snap.status(now, stall_after)), *self._cells(snap, now, stall_after)]
            key = str(i)
            if key not in self.rows:
                self.add_row(*cells, key=key)
                continue
            for (column, _), cell in zip(self.COLUMNS, cells):
                if str(self.get_cell(key, column)) != str(cell):
                    self.update_cell(key, column, cell)

    @staticmethod
    def _cells(snap: RunSnapshot, now: float, stall_after: float) -> list[str]:
        config = snap.info.config
        best = snap.best_validation()
        test = [e for e in snap.evals if e.split == "test" and e.epoch > 0]
        throughput = snap.series.get("samples_per_s", ([], []))[1][-50:]
        peak = snap.series.get("gpu_mem_peak_gb", ([], []))[1]
        batch = f"{config.get('batch_size')}" + (f"×{config['grad_accum']}" if config.get("grad_accum", 1) != 1 else "")
        return [
            batch, str(snap.info.world_size or 1), str(config.get("max_length", "—")), fmt.number(config.get("learning_rate")),
            f"{fmt.count(snap.step)}/{fmt.count(snap.total_steps)}" if snap.total_steps else fmt.count(snap.step),
            fmt.number(snap.last.get("loss_ema")),
            f"{fmt.score(best.balanced_accuracy)} (ep {best.epoch})" if best else "—",
            fmt.score(test[-1].balanced_accuracy) if test else "—",
            fmt.number(statistics.median(throughput)) if throughput else "—",
            fmt.number(max(peak)) if peak else "—",
            fmt.duration(snap.elapsed(now, stall_after)),
        ]


class CompareView(Vertical):
    DEFAULT_CSS = """
    CompareView {
        #curves { height: 1fr; }
        #compare-events { height: 9; }
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        # held, not queried: updates stay harmless while the app tears the screen down
        self._runs = RunsTable(id="runs")
        self._loss = MetricPlot("training loss (smoothed) by epoch", id="compare-loss", integer_x=False)
        self._bal = MetricPlot("validation balanced accuracy by epoch", id="compare-bal", empty="no validation yet")
        self._legend = Legend(id="legend")
        self._events = EventLog(id="compare-events")

    def compose(self) -> ComposeResult:
        yield self._runs
        with Horizontal(id="curves"):
            yield self._loss
            yield self._bal
        yield self._legend
        yield self._events

    def show_status(self, snaps: list[RunSnapshot | None], names: list[str], now: float, stall_after: float) -> None:
        self._runs.show(snaps, names, now, stall_after)

    def show_data(self, snaps: list[RunSnapshot | None], names: list[str]) -> None:
        loss, bal = [], []
        for i, (snap, name) in enumerate(zip(snaps, names)):
            if snap is None:
                continue
            xs, ys = snap.series.get("loss_ema", ([], []))
            if snap.steps_per_epoch:
                loss.append(Line(name, [x / snap.steps_per_epoch for x in xs], ys, run_color(i)))
            val = [e for e in snap.evals if e.split == "validation" and e.balanced_accuracy is not None]
            if val:
                bal.append(Line(name, [float(e.epoch) for e in val], [e.balanced_accuracy for e in val], run_color(i)))
        self._legend.show(names, [run_color(i) for i in range(len(names))])
        self._loss.show(loss)
        self._bal.show(bal)
        self._events.show_events(
            [(snap, name) for snap, name in zip(snaps, names) if snap is not None])
