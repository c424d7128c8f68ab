"""What the user chose to see: plotted metrics, smoothing, log scale, step range, cursor, x axis,
hidden runs. One frozen value held by the app and replaced by each key, so a redraw reads one
consistent set of choices. No Textual here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tui.transform import SMOOTHING

# every plot of the single-run view, in order; "title" is what the metric chooser lists
PANELS = {
    "loss": "training loss",
    "val": "validation accuracy",
    "lr": "learning rate",
    "grad_norm": "gradient norm",
    "throughput": "throughput (samples/s, tokens/s)",
    "step_time": "step time",
    "memory": "memory (GPU allocated, reserved, peak; RSS)",
    "padding": "padding fraction",
}
DEFAULT_PANELS = ("loss", "val", "lr", "throughput", "step_time", "memory")


@dataclass(frozen=True)
class ViewOptions:
    panels: tuple[str, ...] = DEFAULT_PANELS
    first_panel: int = 0  # p: the chosen plot the shown ones start from, when not all fit
    page: int = 1  # compact layout: 1 plots, 2 evaluations (compare view: runs side by side), 3 events
    smoothing: str | int = "auto"
    log_y: bool = False
    x_range: tuple[float, float] | None = None  # zoomed step (or epoch) range; None: all of it
    cursor: float | None = None  # the x of the readout
    wall_clock: bool = False  # x = time since the run started, not the step
    hidden: frozenset[int] = field(default_factory=frozenset)  # compare view: runs not drawn

    def with_(self, **changes) -> "ViewOptions":
        return replace(self, **changes)

    def next_smoothing(self) -> "ViewOptions":
        i = SMOOTHING.index(self.smoothing) if self.smoothing in SMOOTHING else 0
        return replace(self, smoothing=SMOOTHING[(i + 1) % len(SMOOTHING)])

    def toggle_hidden(self, index: int) -> "ViewOptions":
        return replace(self, hidden=self.hidden ^ {index})

    @property
    def smoothing_label(self) -> str:
        return self.smoothing if isinstance(self.smoothing, str) else f"{self.smoothing} steps"
