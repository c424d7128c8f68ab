"""``python -m tui PATH [PATH ...]``: parse the command line, then run the app."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import NoReturn

from tui.paths import FolderOfRuns, NotARun, resolve


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


def run_paths(text: str) -> list[Path]:
    """tui.paths.resolve, with a path that holds no run as an argument error (one line, status 2)."""
    try:
        return resolve(text)
    except NotARun as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class Flatten(argparse.Action):
    """A folder of runs is several paths: one flat list of metrics files. A folder of runs given
    alone is also kept as ``folder``: the dashboard lists its runs first."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, [path for group in values for path in group])
        alone = len(values) == 1 and isinstance(values[0], FolderOfRuns)
        namespace.folder = values[0].folder if alone else None


def parser() -> OneLineParser:
    p = OneLineParser(
        prog="python -m tui",
        description="Live dashboard of nli-qlora training runs: reads RUN_DIR/metrics.jsonl as it grows. "
                    "One path shows that run in full; several compare their loss and validation curves; "
                    "a folder of runs lists them (enter opens one, space marks, c compares the marked).",
        epilog="keys: q quit · f follow · m metrics · s smoothing · l log · + - zoom · c cursor · w wall clock · e export · ? help",
    )
    p.add_argument("paths", nargs="+", type=run_paths, action=Flatten, metavar="PATH",
                   help="a run directory or its metrics.jsonl (it may not exist yet: the dashboard waits), "
                        "or a folder of runs (a sweep): alone, a list of its runs to open or compare; "
                        "with other paths, its runs are compared")
    p.add_argument("--stall-after", type=seconds, default=60.0, metavar="SECONDS",
                   help="call a running run stalled when no line arrived for this long (default 60)")
    p.add_argument("--no-follow", dest="follow", action="store_false",
                   help="start paused: plots show the file as it was when opened until f is pressed")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from tui.app import DashboardApp  # after parsing: --help and errors stay instant

    DashboardApp(args.paths, stall_after=args.stall_after, follow=args.follow, folder=args.folder).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
