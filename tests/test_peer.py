"""The peer baseline (transformers.Trainer) runs on the tiny preset and reports like our train CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nli_qlora.run.metrics import read_metrics

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "peer_trainer.py"
STEPS = 3


@pytest.fixture(scope="module")
def peer_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("peer") / "run"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--preset", "tiny", "--max-steps", str(STEPS), "--epochs", "1",
                           "--train-size", "48", "--validation-size", "24", "--test-size", "24",
                           "--output-dir", str(run_dir)], capture_output=True, text=True, cwd=REPO)
    return proc, run_dir


def test_peer_completes_and_writes_metrics_in_the_schema(peer_run):
    proc, run_dir = peer_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_metrics(run_dir / "metrics.jsonl")
    assert records[0]["event"] == "run_start" and records[-1]["event"] == "run_end"
    assert records[-1]["status"] == "completed"
    start = records[0]
    for key in ("run_name", "config", "model", "device", "params", "lora_targets", "data", "planned", "versions"):
        assert key in start
    assert start["peer"]["trainer"] == "transformers.Trainer"
    assert start["config"]["gradient_checkpointing"] is True  # the usual recipe's default
    assert start["config"]["attention_kernel"] == "auto"  # torch's pick, saved so: scoring the run agrees
    steps = [r for r in records if r["event"] == "step"]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1))
    for s in steps:
        for key in ("loss", "lr", "grad_norm", "samples", "tokens", "padded_tokens", "padding_fraction", "step_time_s",
                    "samples_per_s", "tokens_per_s", "gpu_mem_peak_gb", "rss_gb", "skipped"):
            assert key in s
        assert s["samples"] == 16 and 0 < s["tokens"] <= s["padded_tokens"]


def test_peer_evaluates_zero_shot_and_after_training_with_label_scoring(peer_run):
    _, run_dir = peer_run
    evals = [(r["split"], r["epoch"]) for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "eval"]
    assert evals[:2] == [("validation", 0), ("test", 0)]
    assert ("validation", 1) in evals and evals[-1] == ("test", 1)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["before"]["rows"] == 24 and summary["after"]["rows"] == 24
    assert (run_dir / "report.md").is_file()
    assert (run_dir / "predictions" / "test-epoch1.jsonl").is_file()


def test_peer_refuses_settings_the_usual_recipe_has_not(capsys):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import peer_trainer
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert peer_trainer.main(["--preset", "tiny", "--loss", "label"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--loss" in err
    assert peer_trainer.main(["--preset", "tiny", "--attention-kernel", "flash"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--attention-kernel" in err



SHOW_GPUS = """
import os, runpy
peer = runpy.run_path({script!r}, run_name="peer")
peer["one_gpu_unless_torchrun"]()
print(os.environ.get("CUDA_VISIBLE_DEVICES"))
"""


@pytest.mark.parametrize("env,shown", [({}, "0"), ({"WORLD_SIZE": "2"}, "None"),
                                       ({"CUDA_VISIBLE_DEVICES": "1"}, "1")],
                         ids=["alone", "under-torchrun", "user-choice"])
def test_the_peer_shows_the_trainer_one_gpu_unless_torchrun_or_the_user_chose(env, shown):
    """transformers.Trainer wraps the model in DataParallel on a machine with several GPUs, and its
    replicas lose bitsandbytes' 4-bit state (seen on two H200s): the peer keeps to one GPU."""
    clean = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "CUDA_VISIBLE_DEVICES")}
    proc = subprocess.run([sys.executable, "-c", SHOW_GPUS.format(script=str(SCRIPT))], env={**clean, **env},
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == shown
