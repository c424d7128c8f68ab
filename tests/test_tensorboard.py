"""`--report-to tensorboard`: a tiny run writes TensorBoard event files that hold metrics.jsonl's numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nli_qlora.config import RunConfig
from nli_qlora.infra.errors import UserError
from nli_qlora.run.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]


def test_a_run_with_report_to_tensorboard_writes_the_metrics_files_losses(tmp_path):
    run_dir = tmp_path / "tiny"
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--epochs", "1",
                           "--output-dir", str(run_dir), "--quiet", "--report-to", "tensorboard"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    records = read_metrics(run_dir / "metrics.jsonl")
    steps = [r for r in records if r["event"] == "step"]
    logged = events.Scalars("train/loss")
    assert [e.step for e in logged] == [r["step"] for r in steps]
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in steps], rel=1e-6)  # float32 in the file
    final = [r for r in records if r["event"] == "eval" and r["split"] == "test"][-1]
    assert events.Scalars("test/balanced_accuracy")[-1].value == pytest.approx(final["balanced_accuracy"], rel=1e-6)
    assert "validation/loss" in events.Tags()["scalars"] and "memory/rss_gb" in events.Tags()["scalars"]


def test_report_to_accepts_only_its_choices():
    with pytest.raises(UserError, match="^--report-to: must be one of none, tensorboard"):
        RunConfig(report_to="wandb").validate()
