"""`python -m tui`: paths, options, and one clear line with exit status 2 for a bad argument."""

import subprocess
import sys
from pathlib import Path

import pytest

from tui.__main__ import parser

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui", *args], cwd=REPO, capture_output=True, text=True)


def test_help_works():
    done = run_cli("--help")
    assert done.returncode == 0
    assert "--stall-after" in done.stdout and "--no-follow" in done.stdout


@pytest.mark.parametrize("args", [(), ("run", "--stall-after", "soon"), ("run", "--stall-after", "-5"),
                                  ("/dev/null",), ("run", "--bogus")], ids=str)
def test_a_bad_argument_is_one_line_and_status_2(args):
    done = run_cli(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m tui: error:")
    assert "Traceback" not in done.stderr


def test_a_directory_means_its_metrics_file(tmp_path):
    args = parser().parse_args([str(tmp_path)])
    assert args.paths == [tmp_path / "metrics.jsonl"]


def test_paths_that_do_not_exist_yet_are_accepted(tmp_path):
    args = parser().parse_args([str(tmp_path / "later-run"), str(tmp_path / "other.jsonl")])
    assert args.paths == [tmp_path / "later-run" / "metrics.jsonl", tmp_path / "other.jsonl"]


def test_options(tmp_path):
    args = parser().parse_args([str(tmp_path), "--stall-after", "90", "--no-follow"])
    assert args.stall_after == 90.0 and args.follow is False
    defaults = parser().parse_args([str(tmp_path)])
    assert defaults.stall_after == 60.0 and defaults.follow is True
