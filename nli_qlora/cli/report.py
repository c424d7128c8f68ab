"""python -m nli_qlora.report RUN_DIR: rebuild report.md and summary.json from the run's metrics file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nli_qlora.run.report import write_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nli_qlora.report", description="Rebuild report.md and summary.json.")
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    path = Path(args.run_dir)
    if not (path / "metrics.jsonl").is_file():
        print(f"nli_qlora.report: error: {path} has no metrics.jsonl", file=sys.stderr)
        return 2
    try:
        write_report(path)
    except ValueError as err:
        print(f"nli_qlora.report: error: {err}", file=sys.stderr)
        return 2
    print(path / "report.md")
    return 0
