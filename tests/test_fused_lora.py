"""--fused-lora: the LoRA update in two matmuls (scale and sum in the second's epilogue) computes peft's
function and gradients (real peft, real bitsandbytes 4-bit layers, the loop's own step)."""

import subprocess
import sys

import pytest
import torch

from nli_qlora.model.fused_lora import LoraUpdate, fuse_lora_, is_lora_linear
from tests.test_dequantize_base import _bundle, _losses


def test_the_fused_update_has_the_gradients_of_its_formula():
    g = torch.Generator().manual_seed(0)
    make = lambda *shape: torch.randn(*shape, dtype=torch.float64, generator=g, requires_grad=True)
    base, x, a, b = make(2, 5, 7), make(2, 5, 6), make(3, 6), make(7, 3)
    assert torch.autograd.gradcheck(lambda *t: LoraUpdate.apply(*t, 2.0), (base, x, a, b))
    expected = base + 2.0 * (x @ a.t()) @ b.t()
    assert torch.allclose(LoraUpdate.apply(base, x, a, b, 2.0), expected)


def test_every_lora_layer_takes_the_fused_update_and_peft_is_left_where_it_is_not_plain():
    cfg, bundle = _bundle(fused_lora=True)
    layers = [m for m in bundle.model.modules() if is_lora_linear(m)]
    assert layers and all("forward" in vars(m) for m in layers)
    x = torch.randn(2, 4, layers[0].in_features)
    assert type(layers[0](x).grad_fn).__name__ == "LoraUpdateBackward"
    with bundle.model.disable_adapter():  # adapters off: peft's own forward, the base alone
        assert layers[0](x).grad_fn is None or "LoraUpdate" not in type(layers[0](x).grad_fn).__name__
        assert torch.equal(layers[0](x), layers[0].base_layer(x))
    assert fuse_lora_(bundle.model, on=False) == len(layers)  # the benchmarks switch it per case
    assert not any("forward" in vars(m) for m in layers)
    assert "LoraUpdate" not in type(layers[0](x).grad_fn).__name__


def test_fused_lora_over_another_dtype_than_the_adapters_is_one_clear_error(tmp_path):
    """Asked for where it cannot apply (float32 adapters over a bfloat16 model), --fused-lora would
    quietly be peft's forward: it is refused with one line naming the flag that fixes it."""
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--fused-lora",
                           "--compute-dtype", "bfloat16", "--output-dir", str(tmp_path / "run")],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--fused-lora" in lines[0] and "add --lora-compute-dtype bfloat16" in lines[0], lines


def test_fused_lora_over_an_auto_dtype_that_differs_is_refused_once_the_device_is_known(tmp_path):
    """--compute-dtype auto is float32 on this CPU: bfloat16 adapters cannot take the fused update. The
    model's setup says so in one line (after the run's log lines), and the run is not started."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--fused-lora",
                           "--lora-compute-dtype", "bfloat16", "--output-dir", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "--fused-lora" in last and "add --lora-compute-dtype float32" in last and "Traceback" not in proc.stderr
    assert not (out / "metrics.jsonl").exists()


@pytest.mark.parametrize("mode", ["fast", "eager"])
def test_training_with_the_fused_update_takes_peft_s_steps_within_float32_rounding(mode):
    cfg, plain = _bundle(step_mode=mode)
    cfg_f, fused = _bundle(step_mode=mode, fused_lora=True)
    expected, got = _losses(cfg, plain), _losses(cfg_f, fused)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert expected[-1] < expected[0]


def test_the_fused_update_runs_on_bfloat16_adapter_copies_and_matches_its_eager_twin():
    losses = {}
    for mode in ("eager", "fast"):
        cfg, bundle = _bundle(step_mode=mode, compute_dtype="bfloat16", lora_compute_dtype="bfloat16", fused_lora=True,
                              optimizer="adamw")
        losses[mode] = _losses(cfg, bundle)
    assert losses["fast"] == pytest.approx(losses["eager"], rel=1e-4, abs=1e-5)
    cfg, bundle = _bundle(compute_dtype="bfloat16", lora_compute_dtype="bfloat16", optimizer="adamw")
    assert losses["fast"] == pytest.approx(_losses(cfg, bundle), rel=3e-2)  # peft's path, bf16 rounding apart


def test_a_fused_run_scores_its_checkpoint_to_its_own_predictions(tmp_path):
    from tests.test_lora_compute_dtype import scores_like_the_run
    assert scores_like_the_run(tmp_path, "--fused-lora")["fused_lora"] is True
