"""The plots of the single-run view: for each panel name (tui.view_options.PANELS), its title,
its lines and the values on its bottom border, built from a snapshot and the view's choices."""

from __future__ import annotations

from dataclasses import dataclass

from tui import fmt
from tui.series import ENVELOPE, MEAN
from tui.state import RunSnapshot
from tui.transform import ema, to_wall_clock
from tui.view_options import ViewOptions
from tui.widgets.plot import Line

GRAY, ORANGE, BLUE = (120, 120, 120), (245, 160, 60), (95, 160, 230)
GREEN, PURPLE, TEAL, RED, YELLOW = (115, 190, 115), (185, 140, 220), (80, 190, 190), (225, 95, 95), (220, 200, 90)


def swatch(color: tuple[int, int, int], label: str) -> str:
    """A legend entry for a border title: a colored bar and the series name."""
    return "[rgb({},{},{})]━[/] {}".format(*color, label)


@dataclass(frozen=True)
class Panel:
    title: str
    lines: list[Line]
    note: str
    empty: str = "waiting for steps…"


class PanelBuilder:
    """Builds every panel of one snapshot; x is the step, or seconds since the start (wall clock)."""

    def __init__(self, snap: RunSnapshot, options: ViewOptions):
        self.snap, self.options, self.last = snap, options, snap.last
        steps, times = snap.series.get("time", ([], []))
        start = snap.info.started_at if snap.info and snap.info.started_at is not None else (times[0] if times else 0.0)
        self._clock = (steps, [t - start for t in times]) if options.wall_clock else None

    def x(self, xs: list[float]) -> list[float]:
        return to_wall_clock(xs, *self._clock) if self._clock and self._clock[0] else xs

    def line(self, name: str, label: str, color, side: str = "left", mode: str = MEAN) -> Line:
        xs, ys = self.snap.series.get(name, ([], []))
        return Line(label, self.x(xs), ys, color, side, mode)

    def build(self, name: str) -> Panel:
        return getattr(self, f"_{name}")()

    def _loss(self) -> Panel:
        snap, smoothing = self.snap, self.options.smoothing
        raw = self.line("loss", "raw", GRAY, mode=ENVELOPE)
        lines = [raw]
        if smoothing == "auto":
            lines.append(self.line("loss_ema", "smoothed", ORANGE))
            smoothed = self.last.get("loss_ema")
        elif smoothing != "off":
            steps, ys = snap.series.get("loss", ([], []))
            values = ema(steps, ys, float(smoothing))
            lines.append(Line("smoothed", raw.xs, values, ORANGE))
            smoothed = values[-1] if values else None
        else:
            smoothed = None
        title = f"training loss  {swatch(GRAY, 'raw')}"
        if smoothing != "off":
            title += f"  {swatch(ORANGE, f'smoothed ({self.options.smoothing_label})')}"
        note = f"step {snap.step:,} · loss {fmt.number(self.last.get('loss'))}"
        if smoothed is not None:
            note += f" · smoothed {fmt.number(smoothed)}"
        if snap.skipped_steps:
            note += f" · {snap.skipped_steps:,} skipped"
        return Panel(title, lines, note)

    def _val(self) -> Panel:
        val = [e for e in self.snap.evals if e.split == "validation"]
        steps = [float(e.step) for e in val]
        lines = [Line("balanced accuracy", self.x(steps), [e.balanced_accuracy for e in val
                                                            if e.balanced_accuracy is not None], BLUE),
                 Line("accuracy", self.x(steps), [e.accuracy for e in val if e.accuracy is not None], GREEN)]
        lines = [line for line in lines if len(line.ys) == len(line.xs)]
        best = self.snap.best_validation()
        note = f"best {fmt.score(best.balanced_accuracy)} at epoch {best.epoch}" if best else ""
        return Panel(f"validation  {swatch(BLUE, 'balanced acc')}  {swatch(GREEN, 'accuracy')}", lines, note,
                     empty="no validation yet")

    def _lr(self) -> Panel:
        peak = self.snap.info.config.get("learning_rate") if self.snap.info else None
        return Panel("learning rate", [self.line("lr", "lr", BLUE)],
                     f"now {fmt.number(self.last.get('lr'))} · peak {fmt.number(peak)}")

    def _grad_norm(self) -> Panel:
        return Panel("gradient norm", [self.line("grad_norm", "grad norm", RED, mode=ENVELOPE)],
                     f"last {fmt.number(self.last.get('grad_norm'))}")

    def _throughput(self) -> Panel:
        return Panel(f"{swatch(GREEN, 'samples/s')}  {swatch(PURPLE, 'tokens/s (right)')}",
                     [self.line("samples_per_s", "samples/s", GREEN),
                      self.line("tokens_per_s", "tokens/s", PURPLE, "right")],
                     f"{fmt.number(self.last.get('samples_per_s'))} samples/s · "
                     f"{fmt.number(self.last.get('tokens_per_s'))} tokens/s")

    def _step_time(self) -> Panel:
        return Panel("step time (s)", [self.line("step_time_s", "step time", TEAL)],
                     f"last {fmt.number(self.last.get('step_time_s'))} s")

    def _memory(self) -> Panel:
        gpu = self.last.get("gpu_mem_allocated_gb")
        legend = (f"{swatch(BLUE, 'GPU')}  {swatch(YELLOW, 'reserved')}  {swatch(RED, 'peak')}  "
                  if gpu is not None else "")
        gpu_note = ("GPU n/a (CPU run)" if gpu is None else
                    f"GPU {fmt.number(gpu)} now · {fmt.number(self.last.get('gpu_mem_peak_gb'))} peak")
        return Panel(f"memory GB  {legend}{swatch(TEAL, 'RSS')}",
                     [self.line("gpu_mem_allocated_gb", "GPU allocated", BLUE),
                      self.line("gpu_mem_reserved_gb", "GPU reserved", YELLOW),
                      self.line("gpu_mem_peak_gb", "GPU peak", RED), self.line("rss_gb", "RSS", TEAL)],
                     f"{gpu_note} · RSS {fmt.number(self.last.get('rss_gb'))}", empty="no memory figures yet")

    def _padding(self) -> Panel:
        return Panel("padding fraction", [self.line("padding_fraction", "padding", YELLOW)],
                     f"last {fmt.percent(self.last.get('padding_fraction'))}")
