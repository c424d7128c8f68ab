"""What a person sees in the terminal: a rich progress bar on a TTY, plain lines when piped.

Purely a view: everything shown here is also in metrics.jsonl, which is what programs should read."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class ProgressView:
    def __init__(self, enabled: bool = True):
        self.console = Console(stderr=True, highlight=False)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self._progress = None
        self._task = None

    def log(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, markup=False)

    def start(self, total_steps: int, done: int = 0) -> None:
        if not self.live:
            return
        self._progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} samples/s"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False)
        self._progress.start()
        self._task = self._progress.add_task("train", total=total_steps, completed=done, epoch="-", loss="-", rate="-")

    def step(self, record: dict, every: int = 25) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=record["step"], epoch=record["epoch"],
                                  loss=f"{record['loss']:.4f}" if record["loss"] is not None else "nan",
                                  rate=f"{record['samples_per_s']:.1f}")
        elif self.enabled and (record["step"] % every == 0 or record["step"] == 1):
            loss = f"{record['loss']:.4f}" if record["loss"] is not None else "nan"
            self.log(f"step {record['step']} epoch {record['epoch']} loss {loss} "
                     f"{record['samples_per_s']:.1f} samples/s")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
