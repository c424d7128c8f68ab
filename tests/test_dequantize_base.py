"""--dequantize-base: the frozen 4-bit base as compute-dtype copies of its values trains, scores and
saves exactly as the 4-bit base does (real bitsandbytes, real peft, the loop's own step)."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from nli_qlora.config import preset
from nli_qlora.infra.errors import UserError
from nli_qlora.infra.quiet import quiet_paged_fallback
from nli_qlora.model.bundle import load_bundle, with_lora
from nli_qlora.model.dequantize import dequantize_base_, is_4bit
from nli_qlora.tools.memory import estimate_peak_bytes
from nli_qlora.training.optim import trainer_for
from nli_qlora.training.step import train_step
from tests.test_step_modes import _batches

CPU = torch.device("cpu")


def _bundle(**changes):
    quiet_paged_fallback()
    cfg = dataclasses.replace(preset("tiny"), lora_dropout=0.1, **changes)  # dropout on: the RNG stream matters too
    bundle = with_lora(load_bundle(cfg, CPU))
    bundle.model.train()
    return cfg, bundle


def _losses(cfg, bundle, steps: int = 8) -> list[float]:
    torch.manual_seed(0)
    trainer, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=100)
    batches = _batches(3)
    return [train_step(trainer, [batches[i % 3]])["loss"] for i in range(steps)]


def test_the_dequantized_layer_computes_what_the_4bit_layer_computes():
    _, bundle = _bundle()
    layer = next(m for m in bundle.model.modules() if is_4bit(m))
    x = torch.randn(4, 7, layer.in_features)
    with torch.no_grad():
        expected = layer(x)
    from nli_qlora.model.dequantize import dequantized_linear
    linear = dequantized_linear(layer)
    assert linear.weight.dtype == torch.float32 and not linear.weight.requires_grad
    with torch.no_grad():
        assert torch.equal(linear(x), expected)


@pytest.mark.parametrize("mode", ["fast", "eager"])
def test_training_on_the_dequantized_base_takes_the_4bit_steps(mode):
    cfg, bundle = _bundle(step_mode=mode)
    cfg_d, deq = _bundle(step_mode=mode, dequantize_base=True)
    assert not any(is_4bit(m) for m in deq.model.modules())
    assert sum(is_4bit(m) for m in bundle.model.modules()) > 0
    # the same adapters to start from, and the same published accounting
    start = {n: p for n, p in bundle.model.named_parameters() if p.requires_grad}
    for n, p in deq.model.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, start[n]), n
    assert deq.counts == bundle.counts
    expected, got = _losses(cfg, bundle), _losses(cfg_d, deq)
    # bitwise on CPU: both paths run F.linear on the same values (on a GPU the matmul kernels differ in
    # shape, and bf16 rounding with them: scripts/gpu_smoke.sh's `dequantized = 4-bit` check)
    assert got == expected
    assert expected[-1] < expected[0]


def test_a_resume_may_turn_the_dequantized_base_on_and_trains_on_alike(tmp_path):
    """A stop, then --resume --dequantize-base: every step as in the uninterrupted 4-bit run."""
    import signal

    from tests.test_resume import Run, ok, step_rows
    whole = ok(Run.start(tmp_path / "whole")).records()
    first = Run.start(tmp_path / "run")
    first.wait_for_step(4)
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == 130, first.stderr()
    resumed = ok(Run.resume(tmp_path / "run", "--dequantize-base")).records()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dequantize_base"] is True
    assert [r["kind"] for r in resumed if r["event"] == "warning"][-1] == "resume_setting"
    assert step_rows(resumed) == step_rows(whole)


def test_the_memory_estimate_counts_the_dequantized_base_as_the_unquantized_one():
    from transformers import AutoConfig
    config = AutoConfig.for_model("phi", hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                  num_attention_heads=4, vocab_size=1000)
    four_bit = estimate_peak_bytes(config, preset("seed"), 8, 64)
    deq = estimate_peak_bytes(config, dataclasses.replace(preset("seed"), dequantize_base=True), 8, 64)
    none = estimate_peak_bytes(config, dataclasses.replace(preset("seed"), quantization="none"), 8, 64)
    assert deq["total"] == none["total"] > four_bit["total"]
    assert deq["quantized_weights"] == 0 and deq["dequant_workspace"] == 0


def test_dequantize_base_without_a_4bit_base_is_one_clear_error():
    with pytest.raises(UserError, match="--dequantize-base: needs a 4-bit --quantization"):
        dataclasses.replace(preset("tiny"), quantization="none", dequantize_base=True).validate()


def test_a_run_on_the_dequantized_base_scores_alike_on_either_base(tmp_path):
    """End to end: train with --dequantize-base; the score command on its checkpoint gives the run's
    own test probabilities, with the 4-bit base and with the dequantized one."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--epochs", "1",
                           "--train-size", "96", "--dequantize-base", "--no-zero-shot-eval", "--quiet",
                           "--output-dir", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["dequantize_base"] is True
    run_rows = [json.loads(line) for line in (out / "predictions" / "test-epoch1.jsonl").read_text().splitlines()]
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps({"premise": r["premise"], "hypothesis": r["hypothesis"]}) + "\n"
                                 for r in run_rows))
    for flag in ("--dequantize-base", "--no-dequantize-base"):
        scored = tmp_path / f"scored{flag}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "nli_qlora.score", "--checkpoint", str(out), "--input",
                               str(test_file), "--output", str(scored), "--quiet", flag],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        rows = [json.loads(line) for line in scored.read_text().splitlines()]
        assert [r["predicted"] for r in rows] == [r["predicted"] for r in run_rows]
        for mine, theirs in zip(rows, run_rows):
            assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-5)


def test_dequantize_base_replaces_every_4bit_layer_and_only_those():
    _, bundle = _bundle()
    before = sum(is_4bit(m) for m in bundle.model.modules())
    linears = sum(type(m) is torch.nn.Linear for m in bundle.model.modules())
    assert dequantize_base_(bundle.model) == before
    assert sum(type(m) is torch.nn.Linear for m in bundle.model.modules()) == linears + before


def test_a_layer_repacked_for_cpu_inference_is_refused_not_read_wrong():
    """bitsandbytes' CPU inference layout stores the same 4-bit codes in another order: dequantizing
    it as the trainable layout would give wrong weights (exit 0, wrong scores), so it is refused."""
    from nli_qlora.model.dequantize import dequantized_linear
    _, bundle = _bundle()
    layer = next(m for m in bundle.model.modules() if is_4bit(m))
    layer.weight.quant_state.packing_format_for_cpu = True  # what bitsandbytes sets when it repacks
    with pytest.raises(RuntimeError, match="repacked for CPU inference"):
        dequantized_linear(layer)
