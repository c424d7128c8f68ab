"""``python -m tui PATH [PATH ...]``: parse the command line, then run the app."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import NoReturn

METRICS_FILE = "metrics.jsonl"


class OneLineParser(argparse.ArgumentParser):
    """A bad argument is one line naming it and exit status 2, never a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def metrics_path(text: str) -> Path:
    """A run directory means DIR/metrics.jsonl. A path that does not exist yet is fine (the
    dashboard waits for it): one ending in .jsonl is the file, anything else a run directory."""
    path = Path(text).expanduser()
    if path.is_dir():
        return path / METRICS_FILE
    if path.exists():
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"not a file or directory: {text}")
        return path
    return path if path.suffix == ".jsonl" else path / METRICS_FILE


def parser() -> OneLineParser:
    p = OneLineParser(
        prog="python -m tui",
        description="Live dashboard of nli-qlora training runs: reads RUN_DIR/metrics.jsonl as it grows. "
                    "One path shows that run in full; several compare their loss and validation curves.",
        epilog="keys: q quit · f follow on/off · tab next panel · ? help",
    )
    p.add_argument("paths", nargs="+", type=metrics_path, metavar="PATH",
                   help="a run directory or its metrics.jsonl; it may not exist yet (the dashboard waits)")
    p.add_argument("--stall-after", type=seconds, default=60.0, metavar="SECONDS",
                   help="call a running run stalled when no line arrived for this long (default 60)")
    p.add_argument("--no-follow", dest="follow", action="store_false",
                   help="start paused: plots show the file as it was when opened until f is pressed")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from tui.app import DashboardApp  # after parsing: --help and errors stay instant

    DashboardApp(args.paths, stall_after=args.stall_after, follow=args.follow).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
