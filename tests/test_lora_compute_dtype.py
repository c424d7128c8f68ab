"""--lora-compute-dtype bfloat16: the adapters compute from bfloat16 working copies of float32 master
weights (real peft, real bitsandbytes, the loop's own step). The optimizer, clipping, checkpoints and
resumes see the float32 masters; the fast step and its eager twin take the same steps."""

import dataclasses
import json
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from nli_qlora.config import preset
from nli_qlora.tools.memory import estimate_peak_bytes, lora_parameter_count, ModelShape
from nli_qlora.training.optim import trainer_for
from nli_qlora.training.step import train_step
from tests.test_dequantize_base import _bundle
from tests.test_step_modes import _batches

BF16 = ("--lora-compute-dtype", "bfloat16")


def _trainer(**changes):
    cfg, bundle = _bundle(**changes)
    torch.manual_seed(0)
    trainer, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=100)
    return trainer, bundle.model


def _losses(trainer, steps: int = 8) -> list[float]:
    batches = _batches(3)
    return [train_step(trainer, [batches[i % 3]])["loss"] for i in range(steps)]


def _lora_weights(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if ".lora_A." in n or ".lora_B." in n}


@pytest.mark.parametrize("optimizer", ["adamw", "paged_adamw_8bit"])
def test_the_fast_step_and_its_eager_twin_take_the_same_steps(optimizer):
    losses = {}
    for mode in ("eager", "fast"):
        trainer, model = _trainer(step_mode=mode, lora_compute_dtype="bfloat16", optimizer=optimizer,
                                  lora_r=64, lora_alpha=128)  # r=64: 8-bit states for every tensor in both modes
        losses[mode] = _losses(trainer)
        weights = _lora_weights(model)
        assert weights and all(p.dtype == torch.bfloat16 for p in weights.values())
        masters = trainer.flat.masters if mode == "fast" else trainer.masters.masters
        assert all(m.dtype == torch.float32 for m in masters)
        # the working copies are the masters rounded: published after every update
        assert all(torch.equal(p.detach(), m.detach().to(torch.bfloat16)) for p, m in zip(trainer.copies.params, masters))
    assert losses["eager"][-1] < losses["eager"][0]
    # the first update is the same arithmetic, so the second step's loss is too; later the two clip from a
    # gradient norm summed in another order (one flat tensor against one per weight), a difference of about
    # 1e-7 that can flip a bfloat16 rounding of a working copy. How far that carries depends on the CPU's
    # float kernels: under 1e-4 relative in 8 steps on the Intel CPUs this ran on, 2.8e-4 on an AMD EPYC
    # without AVX-512 (5.3e-4 by step 12). Bounded by a bfloat16 scale, not by one CPU's luck
    assert losses["fast"][:2] == pytest.approx(losses["eager"][:2], rel=1e-6)
    assert losses["fast"] == pytest.approx(losses["eager"], rel=2e-3)


@pytest.mark.parametrize("mode", ["fast", "eager"])
def test_bfloat16_adapters_train_like_float32_ones_within_rounding(mode):
    expected = _losses(_trainer(step_mode=mode)[0])
    got = _losses(_trainer(step_mode=mode, lora_compute_dtype="bfloat16")[0])
    assert got != expected  # the matmuls really ran in bfloat16
    assert got == pytest.approx(expected, rel=2e-2)


def test_masters_accumulate_micro_batches_in_float32():
    """Gradient accumulation sums each micro-batch's bfloat16 gradient into the float32 one."""
    trainer, _ = _trainer(lora_compute_dtype="bfloat16")
    batches = _batches(2)
    whole = train_step(trainer, batches)
    assert whole["grad_norm"] > 0 and not whole["skipped"]
    assert trainer.flat.grad.dtype == torch.float32 and trainer.flat.work_grad.dtype == torch.bfloat16


def test_a_checkpoint_holds_the_float32_masters_and_a_resume_continues_exactly(tmp_path):
    """A stop and a resume take every step of the uninterrupted run; the adapter saved is float32
    and is the masters (not their bfloat16 copies, which would lose what the updates added)."""
    from tests.test_resume import Run, ok, step_rows
    whole = ok(Run.start(tmp_path / "whole", *BF16)).records()
    first = Run.start(tmp_path / "run", *BF16)
    first.wait_for_step(4)
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == 130, first.stderr()
    resumed = ok(Run.resume(tmp_path / "run")).records()
    assert step_rows(resumed) == step_rows(whole)
    saved = load_file(str(tmp_path / "run" / "checkpoints" / "epoch-1" / "adapter_model.safetensors"))
    assert saved and all(t.dtype == torch.float32 for t in saved.values())
    assert any(not torch.equal(t, t.to(torch.bfloat16).float()) for t in saved.values())


def scores_like_the_run(tmp_path, *flags: str) -> dict:
    """Train the tiny preset one epoch with `flags`, score its checkpoint with the score command, and
    check that every test row gets the run's own probabilities; the run's config."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--epochs", "1",
                           "--train-size", "96", *flags, "--no-zero-shot-eval", "--quiet", "--output-dir", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    run_rows = [json.loads(line) for line in (out / "predictions" / "test-epoch1.jsonl").read_text().splitlines()]
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps({"premise": r["premise"], "hypothesis": r["hypothesis"]}) + "\n"
                                 for r in run_rows))
    scored = tmp_path / "scored.jsonl"
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.score", "--checkpoint", str(out), "--input",
                           str(test_file), "--output", str(scored), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert [r["probabilities"] for r in rows] == [r["probabilities"] for r in run_rows]
    return json.loads((out / "config.json").read_text())


def test_a_run_scores_its_checkpoint_to_its_own_predictions(tmp_path):
    """The score command makes the same bfloat16 copies from the saved masters as training did (a
    float32 model: bfloat16 would make results depend on the batch's padding)."""
    assert scores_like_the_run(tmp_path, *BF16)["lora_compute_dtype"] == "bfloat16"


def test_the_memory_estimate_counts_the_working_copies_and_their_smaller_activations():
    from transformers import AutoConfig
    config = AutoConfig.for_model("phi", hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                  num_attention_heads=4, vocab_size=1000)
    cfg = preset("seed")
    fp32 = estimate_peak_bytes(config, cfg, 8, 64)
    bf16 = estimate_peak_bytes(config, dataclasses.replace(cfg, lora_compute_dtype="bfloat16"), 8, 64)
    n = lora_parameter_count(ModelShape.from_config(config), cfg)
    assert bf16["lora_params"] - fp32["lora_params"] >= 2 * n  # the copies, on the flat buffer's alignment
    assert bf16["activations"] < fp32["activations"]  # LoRA inputs kept in bfloat16, not cast to float32
    proj = estimate_peak_bytes(config, dataclasses.replace(cfg, lora_compute_dtype="bfloat16", dequantize_base=True,
                                                           fused_lora=True, fused_projections=True), 8, 64)
    assert proj["lora_params"] - bf16["lora_params"] >= 2 * n  # the staging copy the groups' layout is gathered from
