"""The fast step (flat LoRA buffer, one fused optimizer call) computes the same training as the plain eager step."""

import json
import subprocess
import sys

import pytest
import torch

from nli_qlora.data.batches import Encoded, collate
from nli_qlora.config import RunConfig, preset
from nli_qlora.model.load import attach_lora, load_base_model, match_targets, resolve_source
from nli_qlora.infra.quiet import quiet_paged_fallback
from nli_qlora.training.optim import build_optimizer, build_scheduler
from nli_qlora.training.scoring import LabelScorer
from nli_qlora.training.step import ALIGN, FlatParams, build_trainer, train_step


def _trainer(cfg: RunConfig, mode: str):
    quiet_paged_fallback()
    source = resolve_source(cfg)
    model = load_base_model(cfg, source, torch.device("cpu"), torch.float32)
    matched, _ = match_targets(model, cfg.target_modules)
    model = attach_lora(model, cfg, matched)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return build_trainer(LabelScorer(model, [26, 44, 18]), params, lambda ps: build_optimizer(cfg, ps)[0],
                         lambda opt: build_scheduler(cfg, opt, 100), cfg.loss, cfg.max_grad_norm, mode), model


def _batches(n_steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_steps):
        rows = [Encoded(tuple(torch.randint(3, 100, (int(torch.randint(5, 20, (1,), generator=g)),), generator=g).tolist()),
                        int(torch.randint(0, 3, (1,), generator=g)), i) for i in range(8)]
        out.append(collate(rows, pad_id=0, pad_multiple=16))
    return out


@pytest.mark.parametrize("optimizer,lora_r", [("adamw", 8), ("adamw_8bit", 64)], ids=["adamw", "adamw_8bit-all-8bit-states"])
def test_fast_and_eager_steps_give_the_same_losses(optimizer, lora_r):
    # r=64 makes every LoRA tensor >= 4096 elements, so bitsandbytes keeps 8-bit states for all of them
    # in the eager step too; with segments aligned to its blocks the two quantize identically.
    cfg = preset("tiny")
    cfg.optimizer, cfg.lora_r, cfg.lora_alpha = optimizer, lora_r, 2 * lora_r
    losses = {}
    for mode in ("eager", "fast"):
        trainer, _ = _trainer(cfg, mode)
        batches = _batches(3)
        losses[mode] = [train_step(trainer, [batches[i % 3]])["loss"] for i in range(12)]
    assert losses["eager"][-1] < losses["eager"][0]  # it learns the three fixed batches
    assert losses["fast"] == pytest.approx(losses["eager"], rel=1e-4, abs=1e-5)


def test_the_fast_step_with_the_8bit_kernel_learns_as_the_eager_step():
    """The fast step's update on a GPU (training.adamw8bit_kernel, here in Triton's interpreter) inside the whole
    step. Its quantizer is bitsandbytes' CUDA one; the eager step's is bitsandbytes' CPU one, which rounds some
    small second moments to other codes: the losses agree to 1.4e-4 relative over 12 steps, not bit for bit."""
    from nli_qlora.training.adamw8bit_kernel import DeviceAdamW8bit
    cfg = preset("tiny")
    cfg.optimizer, cfg.lora_r, cfg.lora_alpha = "adamw_8bit", 64, 128
    losses = {}
    for mode in ("eager", "fast"):
        trainer, _ = _trainer(cfg, mode)
        if mode == "fast":
            assert trainer.device_update is None, "on a CPU the fast step leaves the update to bitsandbytes"
            trainer.device_update = DeviceAdamW8bit(trainer.optimizer, trainer.flat.param)
        batches = _batches(3)
        losses[mode] = [train_step(trainer, [batches[i % 3]])["loss"] for i in range(12)]
    assert losses["fast"][-1] < losses["fast"][0]
    assert losses["fast"] == pytest.approx(losses["eager"], rel=5e-4, abs=1e-5)


def test_fast_step_seats_lora_weights_and_grads_in_one_aligned_buffer():
    trainer, model = _trainer(preset("tiny"), "fast")
    flat = trainer.flat
    assert len(trainer.optimizer.param_groups[0]["params"]) == 1
    for p in trainer.params:
        assert p.data.untyped_storage().data_ptr() == flat.param.untyped_storage().data_ptr()
        assert p.grad.untyped_storage().data_ptr() == flat.grad.untyped_storage().data_ptr()
        assert (p.data.storage_offset() % ALIGN) == 0
    before = [p.detach().clone() for p in trainer.params]
    train_step(trainer, _batches(1))
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.params)), "the optimizer moved no LoRA weight"


def test_eager_flag_runs_the_plain_path_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--epochs", "1",
                           "--train-size", "160", "--step-mode", "eager", "--no-zero-shot-eval", "--quiet",
                           "--output-dir", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    steps = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if '"step"' in l]
    steps = [s for s in steps if s["event"] == "step"]
    assert len(steps) == 10 and all(s["captured"] is False for s in steps)


def test_flat_backward_adds_what_backward_accumulates_bit_for_bit():
    """FlatParams.backward (autograd.grad, then multi-tensor adds) against loss.backward() over two
    micro-batches: the same float32 sums, into the same seated views; an unused weight stays zero."""
    torch.manual_seed(0)
    lin, unused = torch.nn.Linear(6, 4), torch.nn.Parameter(torch.randn(3))
    ref_w, ref_b = (lin.weight.detach().clone().requires_grad_(), lin.bias.detach().clone().requires_grad_())
    flat = FlatParams([lin.weight, lin.bias, unused])
    seated = [p.grad for p in (lin.weight, lin.bias, unused)]
    for x in (torch.randn(5, 6), torch.randn(7, 6)):
        flat.backward(lin(x).tanh().pow(2).sum())
        torch.nn.functional.linear(x, ref_w, ref_b).tanh().pow(2).sum().backward()
    assert torch.equal(lin.weight.grad, ref_w.grad) and torch.equal(lin.bias.grad, ref_b.grad)
    assert not unused.grad.any()
    assert all(p.grad is g for p, g in zip((lin.weight, lin.bias, unused), seated))  # still the flat buffer's views


def test_working_copies_in_another_order_are_the_masters_blocks_permuted_and_follow_them():
    """FlatParams' work_order: the bfloat16 copies sit in that order, each in its ALIGN-padded span (the
    masters' blocks permuted); the masters and gradients keep the parameters' order; publish copies
    every one, a weight of several blocks included."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(*shape)) for shape in ((3, 5), (ALIGN + 7,), (2, 2), (4, 3))]
    flat = FlatParams(params, torch.bfloat16, work_order=[2, 0, 3, 1])
    offsets = [p.data.storage_offset() for p in params]
    assert offsets == [ALIGN, 3 * ALIGN, 0, 2 * ALIGN]  # 2, then 0, then 3, then 1 (two blocks)
    assert all(p.data.untyped_storage().data_ptr() == flat.work.untyped_storage().data_ptr() for p in params)
    assert flat.work.numel() == flat.param.numel() == 5 * ALIGN
    assert [m.storage_offset() for m in flat.masters] == [0, ALIGN, 3 * ALIGN, 4 * ALIGN]
    assert [g.storage_offset() for g in flat.grads] == [0, ALIGN, 3 * ALIGN, 4 * ALIGN]
    assert all(torch.equal(p.data, m.to(torch.bfloat16)) for p, m in zip(params, flat.masters))
    with torch.no_grad():
        flat.param.add_(1.5)
    flat.publish()
    assert all(torch.equal(p.data, m.to(torch.bfloat16)) for p, m in zip(params, flat.masters))
    with pytest.raises(ValueError, match="permutation"):
        FlatParams([torch.nn.Parameter(torch.randn(2)) for _ in range(3)], torch.bfloat16, work_order=[0, 0, 1])


def test_fast_step_runs_no_per_weight_gradient_accumulation():
    """The fast step's backward leaves autograd's AccumulateGrad out (one add kernel per LoRA weight)."""
    trainer, _ = _trainer(preset("tiny"), "fast")
    batch = _batches(1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train_step(trainer, batch)
    names = {e.name for e in prof.events()}
    assert "aten::_foreach_add_" in names
    assert "torch::autograd::AccumulateGrad" not in names  # the engine still visits the node; it does not run it
