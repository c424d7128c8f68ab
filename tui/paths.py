"""What a command-line path means: a run, a folder of runs (a sweep), or something that is no run.

Plain file logic, no Textual: decided once at start, so a wrong path is one clear line at once
instead of a dashboard that waits forever for a run that will never come.
"""

from __future__ import annotations

import json
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
SNIFF_BYTES = 64 << 10  # the first lines are enough to tell; a run_start line is a few KB
SNIFF_LINES = 3


class NotARun(ValueError):
    """The path exists but holds no run: the message says what it is instead, in one line."""


class FolderOfRuns(list):
    """The metrics files of a folder of runs, remembering the folder (the picker lists it)."""

    def __init__(self, runs: list[Path], folder: Path) -> None:
        super().__init__(runs)
        self.folder = folder


def find_runs(folder: Path, depth: int = 2) -> list[Path]:
    """The metrics files of the runs inside ``folder``, by name: its subfolders that hold one, and
    (``depth`` 2) the subfolders of those that do not (a folder of sweeps)."""
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
    runs = []
    for child in children:
        if (child / METRICS_FILE).is_file():
            runs.append(child / METRICS_FILE)
        elif depth > 1:
            runs += find_runs(child, depth - 1)
    return runs


def not_metrics(path: Path) -> str | None:
    """Why the file's first lines are not metrics records (docs/metrics.md), or None when they
    are, or when there is nothing to judge yet (empty, or a first line still being written)."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as err:
        return f"cannot read it: {err.strerror or err}"
    lines = [line for line in head.split(b"\n")[:-1] if line.strip()][:SNIFF_LINES]  # complete lines only
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return f"line {number} is not JSON"
        if not isinstance(record, dict) or not isinstance(record.get("event"), str):
            return f"line {number} is not a metrics record (no \"event\")"
        return None  # one good record: a metrics file (later bad lines are counted, not fatal)
    return None


def resolve(text: str) -> list[Path]:
    """The metrics files a command-line path stands for.

    - a run directory: DIR/metrics.jsonl;
    - a folder of runs (subfolders, or theirs, with a metrics.jsonl): each of them (a FolderOfRuns);
    - a metrics file: itself, if its first lines are metrics records;
    - a path that does not exist yet: waited for (ending in .jsonl: the file, else a run directory).
    Raises NotARun for an existing path that cannot be a run."""
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / METRICS_FILE).exists():
            return [path / METRICS_FILE]
        runs = find_runs(path)
        if runs or (path / "sweep.json").is_file():  # a sweep lists its variants before their runs start
            return FolderOfRuns(runs, path)
        return [path / METRICS_FILE]  # an empty run directory: the run may start later
    if path.exists():
        if not path.is_file():
            raise NotARun(f"not a file or directory: {text}")
        why = not_metrics(path)
        if why:
            raise NotARun(f"{text} is not a metrics file: {why}")
        return [path]
    return [path if path.suffix == ".jsonl" else path / METRICS_FILE]
