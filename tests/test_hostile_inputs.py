"""Every bad input of docs/reliability.md's table (scripts/hostile_inputs.py makes them): a clear
error, or a correct result; never exit 0 with a wrong one."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import mounted_tmpfs

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("hostile_inputs", REPO / "scripts" / "hostile_inputs.py")
hostile = importlib.util.module_from_spec(_spec)
sys.modules["hostile_inputs"] = hostile  # dataclasses look their module up
_spec.loader.exec_module(hostile)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    hostile.make_inputs(d)
    return d


@pytest.mark.parametrize("case", hostile.CASES, ids=lambda c: c.name)
def test_each_hostile_input_gives_its_documented_outcome(inputs, case):
    code, text = hostile.run_case(case, inputs)
    assert code == case.exit, text
    assert case.says in text, text
    assert "Traceback" not in text, text
    if case.exit == 2 and "--dry-run" not in case.argv:  # one error line, ours (a dry run lists its problems)
        assert len([line for line in text.splitlines() if ": error: " in line]) == 1, text


def test_a_tsv_open_quote_merges_nothing(inputs):
    """The 8 rows come back as 8 predictions, the quoted premise with its quote mark."""
    rows = [json.loads(line) for line in (inputs / "out-tsv.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == list(range(2, 10))
    assert rows[2]["premise"].startswith('"Lotos')


def test_a_hang_up_leaves_no_temporary_output_and_the_next_run_removes_stale_ones(inputs, tmp_path):
    big = tmp_path / "big.jsonl"
    line = (inputs / "rows.jsonl").read_text()
    big.write_text(line * 20_000)  # long enough to be mid-way when the signal comes
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "nli_qlora.score", "--checkpoint", str(inputs / "run"),
                             "--input", str(big), "--output", str(out), "--quiet"], cwd=REPO,
                            stderr=subprocess.PIPE, text=True)
    while not list(tmp_path.glob(".out.jsonl.*.tmp")) and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGHUP)
    assert proc.wait() == 130, proc.stderr.read()
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.*.tmp"))
    stale = tmp_path / ".out.jsonl.abc123.tmp"  # as kill -9 would leave one
    stale.write_text("half")
    small = subprocess.run([sys.executable, "-m", "nli_qlora.score", "--checkpoint", str(inputs / "run"),
                            "--input", str(inputs / "rows.jsonl"), "--output", str(out)], cwd=REPO,
                           capture_output=True, text=True)
    assert small.returncode == 0 and not stale.exists() and f"removed {stale}" in small.stderr


@pytest.fixture
def small_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "256k") as mount:
        yield mount


def test_the_scorer_on_a_full_or_read_only_disk_is_one_line_exit_2(inputs, small_disk, tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text((inputs / "rows.jsonl").read_text() * 500)  # ~1 MB of predictions: more than the disk holds
    score = [sys.executable, "-m", "nli_qlora.score", "--checkpoint", str(inputs / "run"), "--input", str(big),
             "--quiet"]
    full = subprocess.run([*score, "--output", str(small_disk / "preds.jsonl")], cwd=REPO, capture_output=True,
                          text=True)
    assert full.returncode == 2 and "No space left on device" in full.stderr, full.stderr
    assert full.stderr.count("\n") == 1 and not list(small_disk.iterdir())  # no output, no temporary file
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    read_only = subprocess.run([*score, "--output", str(small_disk / "preds.jsonl")], cwd=REPO, capture_output=True,
                               text=True)
    assert read_only.returncode == 2 and "cannot write into" in read_only.stderr, read_only.stderr
