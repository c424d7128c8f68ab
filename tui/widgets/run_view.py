"""The single-run dashboard: header and progress on top, plots left, evaluations and events right."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable

from tui import fmt
from tui.series import ENVELOPE, MEAN
from tui.state import RunSnapshot
from tui.widgets.evals import ConfusionView, EvalTable
from tui.widgets.events import EventLog
from tui.widgets.header import RunHeader
from tui.widgets.plot import Line, MetricPlot
from tui.widgets.progress import RunProgress

GRAY, ORANGE, BLUE = (120, 120, 120), (245, 160, 60), (95, 160, 230)
GREEN, PURPLE, TEAL, RED = (115, 190, 115), (185, 140, 220), (80, 190, 190), (225, 95, 95)


def _swatch(color: tuple[int, int, int], label: str) -> str:
    """A legend entry for a border title: a colored bar and the series name."""
    return "[rgb({},{},{})]━[/] {}".format(*color, label)


def _line(snap: RunSnapshot, name: str, label: str, color, side: str = "left", mode: str = MEAN) -> Line:
    xs, ys = snap.series.get(name, ([], []))
    return Line(label, xs, ys, color, side, mode)


class RunView(Vertical):
    DEFAULT_CSS = """
    RunView {
        #body { height: 1fr; }
        #plots { width: 1fr; }
        #plot-loss { height: 1fr; }
        .plot-row { height: 1fr; }
        #side { width: 54; }
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        # held, not queried: updates stay harmless while the app tears the screen down
        self._header, self._progress = RunHeader(id="header"), RunProgress(id="progress")
        self._loss = MetricPlot(f"training loss  {_swatch(GRAY, 'raw')}  {_swatch(ORANGE, 'smoothed')}",
                                id="plot-loss")
        self._lr = MetricPlot("learning rate", id="plot-lr")
        self._throughput = MetricPlot(f"{_swatch(GREEN, 'samples/s')}  {_swatch(PURPLE, 'tokens/s (right)')}",
                                      id="plot-throughput")
        self._step_time = MetricPlot("step time (s)", id="plot-step-time")
        self._memory = MetricPlot("memory GB", id="plot-memory", empty="no memory figures yet")
        self._evals = EvalTable(id="evals")
        self._confusion = ConfusionView(id="confusion")
        self._events = EventLog(id="events")
        self._memory_title(gpu=True)

    def compose(self) -> ComposeResult:
        yield self._header
        yield self._progress
        with Horizontal(id="body"):
            with Vertical(id="plots"):
                yield self._loss
                with Horizontal(classes="plot-row"):
                    yield self._lr
                    yield self._throughput
                with Horizontal(classes="plot-row"):
                    yield self._step_time
                    yield self._memory
            with Vertical(id="side"):
                yield self._evals
                yield self._confusion
                yield self._events

    def _memory_title(self, gpu: bool) -> None:
        legend = f"{_swatch(BLUE, 'GPU')}  {_swatch(RED, 'GPU peak')}  " if gpu else ""
        self._memory.border_title = f"memory GB  {legend}{_swatch(TEAL, 'RSS')}"

    # --- always live ---------------------------------------------------------------------------
    def show_status(self, snap: RunSnapshot | None, now: float, stall_after: float) -> None:
        self._header.show(snap, now, stall_after)
        self._progress.show(snap)

    # --- frozen while not following -------------------------------------------------------------
    def show_data(self, snap: RunSnapshot, follow: bool) -> None:
        self._plots(snap)
        self._evals.show(snap.evals, follow=follow)
        self._confusion.show(self._evals.eval_at_cursor())
        self._events.show(snap)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._confusion.show(self._evals.eval_at_cursor())

    def _plots(self, snap: RunSnapshot) -> None:
        last = snap.last
        self._loss.show(
            [_line(snap, "loss", "raw", GRAY, mode=ENVELOPE), _line(snap, "loss_ema", "smoothed", ORANGE)],
            note=f"step {snap.step:,} · loss {fmt.number(last.get('loss'))} · "
                 f"smoothed {fmt.number(last.get('loss_ema'))}"
                 + (f" · {snap.skipped_steps} skipped" if snap.skipped_steps else ""))
        self._lr.show(
            [_line(snap, "lr", "lr", BLUE)],
            note=f"now {fmt.number(last.get('lr'))} · peak {fmt.number(snap.info.config.get('learning_rate'))}"
            if snap.info else "")
        self._throughput.show(
            [_line(snap, "samples_per_s", "samples/s", GREEN), _line(snap, "tokens_per_s", "tokens/s", PURPLE, "right")],
            note=f"{fmt.number(last.get('samples_per_s'))} samples/s · {fmt.number(last.get('tokens_per_s'))} tokens/s")
        self._step_time.show(
            [_line(snap, "step_time_s", "step time", TEAL)], note=f"last {fmt.number(last.get('step_time_s'))} s")
        gpu = last.get("gpu_mem_allocated_gb")
        self._memory_title(gpu=gpu is not None)
        gpu_note = ("GPU n/a (CPU run)" if gpu is None else
                    f"GPU {fmt.number(gpu)} now · {fmt.number(last.get('gpu_mem_peak_gb'))} peak")
        self._memory.show(
            [_line(snap, "gpu_mem_allocated_gb", "GPU allocated", BLUE),
             _line(snap, "gpu_mem_peak_gb", "GPU peak", RED), _line(snap, "rss_gb", "RSS", TEAL)],
            note=f"{gpu_note} · RSS {fmt.number(last.get('rss_gb'))}")
