"""Where the score command's rows go: prediction rows (JSONL or CSV) and error rows.

A file output is written under a temporary name and renamed when scoring ends without error
(atomic.open_atomic), so a finished-looking file is always a whole one; stdout streams instead,
one flushed chunk at a time, so the CLI composes in shell pipelines."""

from __future__ import annotations

import csv
import json
import os
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

from nli_qlora.infra.atomic import open_atomic
from nli_qlora.data.read import BadRow
from nli_qlora.infra.errors import UserError

OUTPUT_FORMATS = (".jsonl", ".csv", ".tsv")


def csv_columns(names: tuple[str, ...]) -> tuple[str, ...]:
    return ("line", "id", "premise", "hypothesis", "predicted", *(f"p_{name}" for name in names), "gold", "correct")


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


class RowWriter:
    """Prediction rows to an open text file, as JSON Lines or CSV/TSV (probabilities as p_* columns)."""

    def __init__(self, f, fmt: str, names: tuple[str, ...]):
        self.names = names
        self.f = f
        self.rows = 0
        self.csv = None
        if fmt in (".csv", ".tsv"):
            self.csv = csv.writer(f, delimiter="\t" if fmt == ".tsv" else ",", lineterminator="\n")
            self.csv.writerow(csv_columns(names))

    def write(self, row: dict) -> None:
        self.rows += 1
        if self.csv is None:
            self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        correct = "" if row["correct"] is None else str(row["correct"]).lower()
        row_id = "" if row["id"] is None else row["id"]  # an id 0 is an id
        self.csv.writerow([row["line"], row_id, row["premise"], row["hypothesis"], row["predicted"],
                           *(row["probabilities"][name] for name in self.names), row["gold"] or "", correct])

    def flush(self) -> None:
        self.f.flush()


@contextmanager
def open_output(path: str, fmt: str, names: tuple[str, ...]):
    """A RowWriter on stdout (streamed) or on a file that appears only once the block succeeds."""
    if path == "-":
        writer = RowWriter(sys.stdout, fmt, names)
        yield writer
        writer.flush()
        return
    with open_atomic(path, "w", encoding="utf-8", newline="") as f:
        yield RowWriter(f, fmt, names)


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


def check_paths(inputs: dict[str, str | None], outputs: dict[str, str | None]) -> None:
    """Before any work: no two of the scorer's files may be one file (an output would replace the
    input, or another output), and every output must be writable where it is to go."""
    seen: dict[str, str] = {}
    for flag, path in {**inputs, **outputs}.items():
        if path in (None, "-"):
            continue
        real = os.path.realpath(path)
        if real in seen:
            raise UserError(f"{flag} and {seen[real]} name the same file {path}; give each its own")
        seen[real] = flag
    for flag, path in outputs.items():
        if path in (None, "-"):
            continue
        p = Path(path)
        if p.is_dir():
            raise UserError(f"{flag}: {p} is a directory; name a file")
        existing = next(a for a in p.absolute().parents if a.exists())  # missing folders are made
        if not existing.is_dir():
            raise UserError(f"{flag}: {existing} is a file, not a directory")
        if not os.access(existing, os.W_OK):
            raise UserError(f"{flag}: cannot write into {existing} (read-only or no permission)")


def remove_stale_temps(path: str | None) -> list[Path]:
    """Temporary files an interrupted scorer left beside `path` (`.NAME.*.tmp`, open_atomic's
    pattern: a hang-up or kill -9 leaves them, hidden, sometimes hundreds of MB)."""
    if path in (None, "-"):
        return []
    p = Path(path)
    stale = sorted(p.parent.glob(f".{p.name}.*.tmp")) if p.parent.is_dir() else []
    for f in stale:
        f.unlink(missing_ok=True)
    return stale
