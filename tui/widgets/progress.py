"""Where the run is: an epoch bar and a step bar against the planned totals."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from tui.state import RunSnapshot


class RunProgress(Horizontal):
    DEFAULT_CSS = """
    RunProgress {
        height: 1;
        padding: 0 1;
        Label { width: auto; min-width: 13; margin-right: 1; color: $text-muted; }
        ProgressBar { width: 1fr; margin-right: 3; }
        ProgressBar Bar { width: 1fr; }
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._key: tuple | None = None
        # held, not queried: updates stay harmless while the app tears the screen down.
        # A total is always set: an indeterminate bar animates, which is neither calm nor testable.
        self._epoch_label = Label("epoch —", id="epoch-label")
        self._epoch_bar = ProgressBar(total=1, show_eta=False, id="epoch-bar")
        self._step_label = Label("step —", id="step-label")
        self._step_bar = ProgressBar(total=1, show_eta=False, id="step-bar")

    def compose(self) -> ComposeResult:
        yield from (self._epoch_label, self._epoch_bar, self._step_label, self._step_bar)

    def show(self, snap: RunSnapshot | None) -> None:
        key = None if snap is None else (snap.epoch, snap.epochs, snap.step, snap.total_steps, snap.steps_per_epoch)
        if key == self._key and key is not None:
            return  # this runs every second: skip the relayout when nothing moved
        self._key = key
        epochs = snap.epochs if snap and snap.epochs else None
        total = snap.total_steps if snap and snap.total_steps else None
        done_epochs = 0.0
        if snap and snap.steps_per_epoch and snap.step:
            done_epochs = snap.step / snap.steps_per_epoch
        epoch = snap.epoch if snap else 0
        self._epoch_label.update(f"epoch {epoch} / {epochs or '?'}")
        self._epoch_bar.update(total=epochs or 1, progress=min(done_epochs, epochs or 0))
        step = snap.step if snap else 0
        self._step_label.update(f"step {step:,} / {f'{total:,}' if total else '?'}")  # grows with the numbers
        self._step_bar.update(total=total or 1, progress=min(step, total or 0))
