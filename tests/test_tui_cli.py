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


@pytest.mark.parametrize("content", ["root:x:0:0:root:/root:/bin/bash\n", "# README\n\nSome text.\n",
                                     '{"premise": "a", "hypothesis": "b", "label": 0, "prediction": 1}\n'],
                         ids=["passwd", "markdown", "predictions"])
def test_a_file_that_is_not_a_metrics_file_is_one_line_and_status_2(tmp_path, content):
    path = tmp_path / "file.jsonl"
    path.write_text(content, encoding="utf-8")
    done = run_cli(str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a metrics file: line 1 is not" in lines[0]
    assert "Traceback" not in done.stderr


def test_a_metrics_file_and_an_empty_one_are_accepted(tmp_path):
    good, empty = tmp_path / "good.jsonl", tmp_path / "empty.jsonl"
    good.write_text((REPO / "tests/data/tiny_run_metrics.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    empty.write_text("", encoding="utf-8")
    assert parser().parse_args([str(good), str(empty)]).paths == [good, empty]


def test_a_folder_of_runs_means_every_run_inside(tmp_path):
    for name in ("b32", "b8", "not-a-run"):
        (tmp_path / name).mkdir()
    for name in ("b32", "b8"):
        (tmp_path / name / "metrics.jsonl").write_text("", encoding="utf-8")
    args = parser().parse_args([str(tmp_path)])
    assert args.paths == [tmp_path / "b32" / "metrics.jsonl", tmp_path / "b8" / "metrics.jsonl"]
