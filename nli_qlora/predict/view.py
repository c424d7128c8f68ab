"""What a person sees of the score command: a rows/s progress line on a terminal, the metrics
tables and the counts. Programs read the output rows and --metrics-out instead."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text


def note(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


class RowProgress:
    """A rich progress line with rows/s on a terminal; nothing when stderr is piped or --quiet."""

    def __init__(self, enabled: bool):
        self.console = Console(stderr=True, highlight=False)
        self.live = enabled and self.console.is_terminal
        self._progress = None
        self._start = time.perf_counter()
        self.done = 0

    def __enter__(self) -> "RowProgress":
        if self.live:
            self._progress = Progress(SpinnerColumn(), TextColumn("scored {task.completed:,} rows"),
                                      TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(),
                                      console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("score", total=None, rate="-")
        self._start = time.perf_counter()
        return self

    def __call__(self, n: int) -> None:
        self.done += n
        if self._progress is not None:
            rate = self.done / max(1e-9, time.perf_counter() - self._start)
            self._progress.update(self._task, completed=self.done, rate=f"{rate:,.0f}")

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def metrics_tables(metrics: dict, title: str) -> list:
    """The summary as rich renderables: a headline, per-class precision/recall/F1, the confusion matrix."""
    head = Text(f"{title}: balanced accuracy {pct(metrics['balanced_accuracy'])}, "
                f"accuracy {pct(metrics['accuracy'])} on {metrics['rows']} labelled rows")
    per_class = Table()
    for col in ("class", "precision", "recall", "F1", "support"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    names = metrics["labels"]
    for label in names:
        per_class.add_row(label, pct(metrics["per_class_precision"][label]), pct(metrics["per_class_recall"][label]),
                          pct(metrics["per_class_f1"][label]), str(metrics["support"][label]))
    matrix = Table()
    matrix.add_column("gold \\ predicted")
    for label in names:
        matrix.add_column(label, justify="right")
    for label, counts in zip(names, metrics["confusion"]):
        matrix.add_row(label, *(str(c) for c in counts))
    return [head, per_class, matrix]


def report(args, result: dict) -> None:
    """The human view: metrics tables (stdout, or stderr when stdout carries the rows) and counts."""
    if args.quiet:
        return
    console = Console(stderr=args.output == "-", highlight=False)
    if result["rows"]:
        for table in metrics_tables(result, result["checkpoint"] or result["model"]):
            console.print(table)
        if "compare" in result:
            c = result["compare"]
            console.print(f"compare: balanced accuracy {pct(c['balanced_accuracy'])} before ({c['name']}) -> "
                          f"{pct(result['balanced_accuracy'])} after; corrected {c['cases']['corrected']}, "
                          f"not corrected {c['cases']['not_corrected']}, regressed {c['cases']['regressed']}, "
                          f"both right {c['cases']['both_right']}", markup=False)
    elif "compare" in result:
        console.print("compare: no rows with gold labels to compare", markup=False)
    note(args, f"scored {result['rows_scored']} of {result['rows_in']} rows in {result['seconds']:.1f} s "
               f"({result['rows_per_s']:,.0f} rows/s) -> {'stdout' if args.output == '-' else args.output}; "
               f"{result['process_s']:.1f} s since the process started, {result['before_rows_s']:.1f} s of it before "
               f"the first row (interpreter, imports, model and adapter)")
