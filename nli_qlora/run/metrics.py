"""The metrics file writer: the one channel from a run to the dashboard and the report.

Schema: docs/metrics.md. Only rank 0 gets a real writer; other ranks get a NullMetrics."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from nli_qlora.infra.errors import UserError

SCHEMA = 1


def _clean(value):
    """JSON has no NaN/inf: write them as null so every reader can parse the line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class MetricsWriter:
    """Writes each record to the file, then hands it to each sink (e.g. run.tensorboard's, for --report-to)."""

    def __init__(self, path: str | Path, append: bool = False, sinks=()):
        self.path = Path(path)
        self.sinks = list(sinks)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w", encoding="utf-8")
        self._t0 = time.time()

    def write(self, event: str, **fields) -> dict:
        now = time.time()
        record = {"event": event, "schema": SCHEMA, "time": now, "elapsed_s": round(now - self._t0, 4)}
        record.update(_clean(fields))
        # one write call per line, flushed at once: a tailing reader sees whole lines only, and the
        # line survives the process (kill -9 included). fsync (surviving the machine) costs
        # milliseconds, so only the rare events pay it, not every step.
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()
        if event != "step":
            os.fsync(self._file.fileno())
        for sink in self.sinks:
            sink.write(record)
        return record

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []
        if not self._file.closed:
            self._file.close()


class NullMetrics:
    """What non-zero ranks (and dry runs) get: the same interface, no file."""

    path = None

    def write(self, event: str, **fields) -> dict:
        return {"event": event, **fields}

    def close(self) -> None:
        pass


def parse_records(lines) -> list[dict]:
    """The records among whole lines of a metrics file; a line that does not parse is skipped."""
    records = []
    for line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "event" in obj:
            records.append(obj)
    return records


def read_metrics(path: str | Path) -> list[dict]:
    """All complete, parseable records of a metrics file (a torn last line is ignored)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_records(line for line in f if line.endswith("\n"))


def cut_back(path: Path, offset: int, checkpoint: Path) -> list[dict]:
    """Cut the metrics file back to `offset` bytes (what it held when `checkpoint` was saved) and
    return the records cut off: a resume redoes them. A file shorter than that was replaced or
    cut by someone else: the run cannot continue from it."""
    size = path.stat().st_size if path.is_file() else 0
    if size < offset:
        raise UserError(f"--resume: {path} holds {size} bytes, fewer than the {offset} it held when "
                        f"{checkpoint} was saved; it was replaced or cut, so the run cannot continue")
    with open(path, "rb") as f:
        f.seek(offset)
        later = parse_records(f.read().decode("utf-8", "replace").splitlines())
    with open(path, "r+b") as f:
        f.truncate(offset)
        os.fsync(f.fileno())
    return later


def resume_metrics(path: Path, restored: Path, pos, changed: dict, process_start: float,
                   sinks=(), startup: dict | None = None) -> tuple[MetricsWriter, int]:
    """(the writer a resumed run appends with, steps it redoes): the file cut back to what it held
    when `restored` was saved (`pos`, its checkpoint.Position), then the `checkpoint` record of kind
    "restored", the `resume` record (with this process's start, Unix time, and its setup's seconds) and a warning per setting the resume changed."""
    later = cut_back(path, pos.metrics_offset, restored)
    ends = [r for r in later if r.get("event") == "run_end"]
    discarded = sum(r.get("event") == "step" for r in later)
    metrics = MetricsWriter(path, append=True, sinks=sinks)
    metrics.write("checkpoint", path=str(restored), step=pos.step, epoch=pos.epoch - (pos.epoch_step == 0),
                  kind="restored")
    metrics.write("resume", process_start=round(process_start, 3), checkpoint=str(restored), step=pos.step, epoch=pos.epoch, epoch_step=pos.epoch_step,
                  previous_status=ends[-1]["status"] if ends else "killed", discarded_steps=discarded,
                  startup=startup or {})
    for name, (old, new) in changed.items():
        metrics.write("warning", kind="resume_setting", message=f"resumed with --{name.replace('_', '-')} {new} (was {old})")
    return metrics, discarded


def last_end(run_dir: Path) -> dict | None:
    """The run_end record closing the run's last start or resume; None while it runs, after a kill,
    or with no metrics file."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    ends = [r for r in read_metrics(path) if r["event"] in ("run_end", "resume", "run_start")]
    last = ends[-1] if ends else None
    return last if last and last["event"] == "run_end" else None


def completed_run(run_dir: Path) -> dict | None:
    """The final run_end record when the run already completed, else None."""
    end = last_end(run_dir)
    return end if end and end.get("status") == "completed" else None
