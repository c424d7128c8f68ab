"""Where the score CLI's rows go: prediction rows (JSONL or CSV), error rows, the metrics table.

A file output is written under a temporary name and renamed when scoring ends without error
(atomic.open_atomic), so a finished-looking file is always a whole one; stdout streams instead,
one flushed chunk at a time, so the CLI composes in shell pipelines."""

from __future__ import annotations

import csv
import json
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from nli_qlora.infra.atomic import open_atomic
from nli_qlora.config import LABELS
from nli_qlora.data.read import BadRow, Example
from nli_qlora.infra.errors import UserError

OUTPUT_FORMATS = (".jsonl", ".csv", ".tsv")
CSV_COLUMNS = ("line", "id", "premise", "hypothesis", "predicted", *(f"p_{label}" for label in LABELS),
               "gold", "correct")


def output_format(path: str, fmt: str | None = None, flag: str = "--output") -> str:
    """.jsonl/.csv/.tsv from --output-format or the file's extension; stdout defaults to JSONL."""
    if fmt:
        fmt = fmt if fmt.startswith(".") else "." + fmt
    elif path == "-":
        fmt = ".jsonl"
    else:
        fmt = Path(path).suffix.lower()
    if fmt not in OUTPUT_FORMATS:
        raise UserError(f"{flag}: cannot write {fmt or 'a file without extension'!r} "
                        f"({path}); use one of {' '.join(OUTPUT_FORMATS)} or --output-format")
    return fmt


def default_errors_path(output: str) -> Path:
    """preds.jsonl -> preds.errors.jsonl, next to the output."""
    path = Path(output)
    return path.with_name(f"{path.stem}.errors.jsonl")


def prediction_row(ex: Example, probs: np.ndarray) -> dict:
    """One output row, in the same fields as a training run's predictions/*.jsonl (plus `correct`);
    `id`, `gold` and `correct` are null when the input row has no id or gold label."""
    predicted = int(probs.argmax())
    return {"line": ex.line, "id": ex.id, "premise": ex.premise, "hypothesis": ex.hypothesis,
            "predicted": LABELS[predicted],
            "probabilities": {label: round(float(p), 6) for label, p in zip(LABELS, probs)},
            "gold": None if ex.label is None else LABELS[ex.label],
            "correct": None if ex.label is None else predicted == ex.label}


class RowWriter:
    """Prediction rows to an open text file, as JSON Lines or CSV/TSV (probabilities as p_* columns)."""

    def __init__(self, f, fmt: str):
        self.f = f
        self.rows = 0
        self.csv = None
        if fmt in (".csv", ".tsv"):
            self.csv = csv.writer(f, delimiter="\t" if fmt == ".tsv" else ",", lineterminator="\n")
            self.csv.writerow(CSV_COLUMNS)

    def write(self, row: dict) -> None:
        self.rows += 1
        if self.csv is None:
            self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        correct = "" if row["correct"] is None else str(row["correct"]).lower()
        self.csv.writerow([row["line"], row["id"] or "", row["premise"], row["hypothesis"], row["predicted"],
                           *(row["probabilities"][label] for label in LABELS), row["gold"] or "", correct])

    def flush(self) -> None:
        self.f.flush()


@contextmanager
def open_output(path: str, fmt: str):
    """A RowWriter on stdout (streamed) or on a file that appears only once the block succeeds."""
    if path == "-":
        writer = RowWriter(sys.stdout, fmt)
        yield writer
        writer.flush()
        return
    with open_atomic(path, "w", encoding="utf-8", newline="") as f:
        yield RowWriter(f, fmt)


class ErrorSink:
    """Rows that could not be scored: JSON Lines {line, reason} in a file, or one stderr line each."""

    def __init__(self, f, source: str, prog: str):
        self.f = f
        self.source = source
        self.prog = prog
        self.rows = 0
        self.first: BadRow | None = None

    def write(self, bad: BadRow) -> None:
        self.rows += 1
        self.first = self.first or bad
        if self.f is None:
            print(f"{self.prog}: {self.source}: line {bad.line}: {bad.reason}", file=sys.stderr)
        else:
            self.f.write(json.dumps({"line": bad.line, "reason": bad.reason}, ensure_ascii=False) + "\n")


@contextmanager
def open_errors(path: Path | None, source: str, prog: str):
    """An ErrorSink on a file (written whole, possibly empty, so it always matches this run) or stderr."""
    with (open_atomic(path, "w", encoding="utf-8") if path is not None else nullcontext()) as f:
        yield ErrorSink(f, source, prog)


def write_jsonl(path: str | Path, rows) -> None:
    with open_atomic(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def metrics_tables(metrics: dict, title: str) -> list:
    """The summary as rich renderables: a headline, per-class precision/recall/F1, the confusion matrix."""
    from rich.table import Table
    from rich.text import Text

    head = Text(f"{title}: balanced accuracy {pct(metrics['balanced_accuracy'])}, "
                f"accuracy {pct(metrics['accuracy'])} on {metrics['rows']} labelled rows")
    per_class = Table()
    for col in ("class", "precision", "recall", "F1", "support"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for label in LABELS:
        per_class.add_row(label, pct(metrics["per_class_precision"][label]), pct(metrics["per_class_recall"][label]),
                          pct(metrics["per_class_f1"][label]), str(metrics["support"][label]))
    matrix = Table()
    matrix.add_column("gold \\ predicted")
    for label in LABELS:
        matrix.add_column(label, justify="right")
    for label, counts in zip(LABELS, metrics["confusion"]):
        matrix.add_row(label, *(str(c) for c in counts))
    return [head, per_class, matrix]
