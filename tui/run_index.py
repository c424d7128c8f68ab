"""The runs of a folder, one summary line each, for the picker (no Textual here).

A folder of runs is any folder whose subfolders (or their subfolders) hold a ``metrics.jsonl``.
A sweep directory adds ``sweep.json`` (``python -m nli_qlora.sweep``'s state: variants, each with
its runs, one per seed, and the chosen variant's name): its runs come first, with the sweep's
validation score and the chosen variant's runs marked; runs it does not list are added after. Rows are sorted by score (the sweep's, else the best
validation balanced accuracy), best first; runs without one follow in name order.

A summary reads a whole metrics file but parses only its few non-step records and its last step
line (step lines are most of a long file, and the list needs none of their numbers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tui.paths import METRICS_FILE, find_runs
from tui.state import RunSnapshot, RunState

SWEEP_FILE = "sweep.json"
STEP_MARKS = (b'"event": "step"', b'"event":"step"')


@dataclass(frozen=True)
class RunRow:
    """One line of the picker."""

    name: str
    path: Path  # the run's metrics file
    snap: RunSnapshot | None  # None: the file is not there (a sweep variant not started)
    score: float | None = None  # what the list sorts by
    sweep_status: str | None = None  # the sweep's word for a variant without a metrics file
    chosen: bool = False  # the sweep's chosen variant


def summarize(path: Path) -> RunSnapshot | None:
    """The run in ``path`` as far as the list needs it (None when the file cannot be read)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    steps = [i for i, line in enumerate(lines) if any(mark in line for mark in STEP_MARKS)]
    keep = set(range(len(lines))) - set(steps)
    if steps:
        keep.add(steps[-1])
    state = RunState(source=str(path))
    state.feed(lines[i].decode("utf-8", errors="replace") for i in sorted(keep))
    state.exists = state.caught_up = True
    return state.snapshot(series=False)


def read_sweep(folder: Path) -> dict | None:
    """sweep.json, when there is one and it is the object it should be."""
    try:
        sweep = json.loads((folder / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return sweep if isinstance(sweep, dict) and isinstance(sweep.get("variants"), list) else None


def _best(snap: RunSnapshot | None) -> float | None:
    best = snap.best_validation() if snap is not None else None
    return best.balanced_accuracy if best else None


def _variant_runs(variant) -> list[tuple[str, object, str]]:
    """(run directory, score, status) of each run of a sweep variant, as `python -m nli_qlora.sweep`
    writes it: {"name", "same_as", "runs": [{"run_dir", "outcome": {"score", "status"}}]} (one run
    per seed); a variant that reuses another's run (`same_as`) adds none."""
    if not isinstance(variant, dict) or variant.get("same_as") or not isinstance(variant.get("runs"), list):
        return []
    out = []
    for run in variant["runs"]:
        if isinstance(run, dict) and run.get("run_dir"):
            outcome = run.get("outcome") if isinstance(run.get("outcome"), dict) else {}
            out.append((str(run["run_dir"]), outcome.get("score"), str(outcome.get("status") or "pending")))
    return out


def scan(folder: Path) -> list[RunRow]:
    """Every run of the folder, summarized, best score first."""
    rows: list[RunRow] = []
    seen: set[Path] = set()
    sweep = read_sweep(folder)
    for variant in (sweep or {}).get("variants", []):
        for run_dir, score, status in _variant_runs(variant):
            path = folder / run_dir / METRICS_FILE
            if path.resolve() in seen:
                continue
            snap = summarize(path) if path.is_file() else None
            score = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else _best(snap)
            rows.append(RunRow(run_dir, path, snap, score, status, variant.get("name") == sweep.get("chosen")))
            seen.add(path.resolve())
    for path in find_runs(folder):
        if path.resolve() not in seen:
            snap = summarize(path)
            rows.append(RunRow(str(path.parent.relative_to(folder)), path, snap, _best(snap)))
    return sorted(rows, key=lambda r: (r.score is None, -(r.score or 0.0), r.name))
