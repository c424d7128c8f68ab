"""Record a real tiny run's metrics file for the dashboard's tests: tests/data/tiny_run_metrics.jsonl.

Runs `python -m nli_qlora.train --preset tiny` in a temporary directory named `tiny` and copies its
metrics.jsonl over the recorded one. Run it again whenever the metrics schema or the tiny preset
changes (tests/test_train_e2e.py checks the recorded file against the current schema).

    python scripts/record_tiny_run.py [--out tests/data/tiny_run_metrics.jsonl]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "data" / "tiny_run_metrics.jsonl"


def record(out: Path, extra: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="record-tiny-") as tmp:
        run_dir = Path(tmp) / "tiny"
        cmd = [sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--output-dir", str(run_dir), "--quiet",
               *extra]
        proc = subprocess.run(cmd, cwd=REPO)
        if proc.returncode != 0:
            print(f"record_tiny_run: the tiny run failed (exit {proc.returncode}); {out} left as it was",
                  file=sys.stderr)
            return proc.returncode
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "metrics.jsonl", out)
    print(out)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Record a real tiny run's metrics.jsonl for the dashboard tests.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to copy it (default {DEFAULT_OUT})")
    args, extra = parser.parse_known_args(argv)  # anything else goes to nli_qlora.train
    return record(args.out, extra)


if __name__ == "__main__":
    sys.exit(main())
