"""bitsandbytes' CPU inference layout, forced on any machine.

On a CPU with AVX512-BF16, bitsandbytes (0.49+) repacks a 4-bit weight into an inference layout
the first time its layer runs in eval mode without gradients, and never packs it back; training
after an evaluation then failed. Whether a layer may repack is decided once, in `Linear4bit.__init__`,
from `bitsandbytes.nn.modules.has_avx512bf16()`: these tests make that answer "yes" in a real
training process, so the path is exercised whatever CPU runs them (CI's may lack the feature)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nli_qlora.config import preset
from nli_qlora.run.metrics import read_metrics
from nli_qlora.model.load import load_base_model, resolve_source

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--train-size", "96", "--validation-size", "48", "--test-size", "48", "--epochs", "2"]

FORCED = """
import sys
import nli_qlora  # first, as in every command: it quiets bitsandbytes' import-time notice
import bitsandbytes.nn.modules
bitsandbytes.nn.modules.has_avx512bf16 = lambda: True  # as on a CPU with AVX512-BF16
from nli_qlora.cli.train import main
sys.exit(main(sys.argv[1:]))
"""


def tiny_run(run_dir: Path, forced: bool) -> subprocess.CompletedProcess:
    prefix = ["-c", FORCED] if forced else ["-m", "nli_qlora.train"]
    return subprocess.run([sys.executable, *prefix, "--preset", "tiny", "--output-dir", str(run_dir), "--quiet",
                           *SMALL], capture_output=True, text=True, cwd=REPO)


def test_training_after_evaluation_works_and_matches_where_bitsandbytes_would_repack(tmp_path):
    """Zero-shot evaluation, an epoch, evaluation, another epoch: the forced process trains through
    every evaluation and takes exactly the steps of a process that never repacks."""
    plain, forced = tiny_run(tmp_path / "plain", False), tiny_run(tmp_path / "forced", True)
    assert plain.returncode == 0, plain.stderr
    assert forced.returncode == 0, forced.stderr
    assert forced.stderr == "", forced.stderr  # --quiet: nothing, not even bitsandbytes' notices
    steps = lambda d: [(r["loss"], r["grad_norm"]) for r in read_metrics(d / "metrics.jsonl")  # noqa: E731
                       if r["event"] == "step"]
    assert len(steps(tmp_path / "forced")) == 12
    assert steps(tmp_path / "forced") == steps(tmp_path / "plain")


@pytest.mark.parametrize("trains,dtype,fast", [(True, torch.float32, False), (True, torch.bfloat16, False),
                                                (False, torch.float32, False), (False, torch.bfloat16, True)],
                         ids=["training-fp32", "training-bf16", "scoring-fp32", "scoring-bf16"])
def test_only_a_bfloat16_scoring_model_takes_the_fast_cpu_inference_layout(monkeypatch, trains, dtype, fast):
    """Its kernel computes in bfloat16: a float32 scorer keeps reproducing its run's predictions."""
    import bitsandbytes.nn.modules as bnb_modules
    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    cfg = preset("tiny")
    model = load_base_model(cfg, resolve_source(cfg), torch.device("cpu"), dtype, trains=trains)
    layers = [m for m in model.modules() if isinstance(m, bnb_modules.Linear4bit)]
    assert layers and all(m.support_avx512bf16_for_cpu is fast for m in layers)
