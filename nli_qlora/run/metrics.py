"""The metrics file writer: the one channel from a run to the dashboard and the report.

Schema: docs/metrics.md. Only rank 0 gets a real writer; other ranks get a NullMetrics."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

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
    def __init__(self, path: str | Path, append: bool = False):
        self.path = Path(path)
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
        return record

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class NullMetrics:
    """What non-zero ranks (and dry runs) get: the same interface, no file."""

    path = None

    def write(self, event: str, **fields) -> dict:
        return {"event": event, **fields}

    def close(self) -> None:
        pass


def read_metrics(path: str | Path) -> list[dict]:
    """All complete, parseable records of a metrics file (a torn last line is ignored)."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and "event" in obj:
                records.append(obj)
    return records
