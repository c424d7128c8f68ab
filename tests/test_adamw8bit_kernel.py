"""The fast step's 8-bit AdamW kernel (training.adamw8bit_kernel): bitsandbytes' CUDA algorithm on bitsandbytes'
own state, a step the device skips when the loss or the gradient norm is not finite, and the optimizers it
takes over. The fast step takes it on a GPU only; here the tests build it for Triton's interpreter
(tests/conftest.py). scripts/gpu_smoke.sh holds it to bitsandbytes' CUDA kernel on a GPU."""

from __future__ import annotations

import math

import bitsandbytes as bnb
import numpy as np
import pytest
import torch

from nli_qlora.config import preset
from nli_qlora.training.adamw8bit_kernel import QBLOCK, DeviceAdamW8bit
from nli_qlora.training.step import train_step

from test_step_modes import _batches, _trainer


def _quantize_2d(x: np.ndarray, code: np.ndarray, signed: bool) -> np.ndarray:
    """bitsandbytes' quantize_2D (csrc, 8-bit blockwise optimizers), ported line by line."""
    pivot, lower_pivot, upper_pivot = np.full(x.shape, 127), np.zeros(x.shape, int), np.full(x.shape, 255)
    lower = np.full(x.shape, -1.0 if signed else 0.0, np.float32)
    upper = np.ones(x.shape, np.float32)
    val = code[pivot]
    for i in (64, 32, 16, 8, 4, 2, 1):
        up = x > val
        lower_pivot, lower = np.where(up, pivot, lower_pivot), np.where(up, val, lower)
        upper_pivot, upper = np.where(up, upper_pivot, pivot), np.where(up, upper, val)
        pivot = np.where(up, pivot + i, pivot - i)
        val = code[pivot]
    above = np.where(x > (upper + val) * np.float32(0.5), upper_pivot, pivot)
    below = np.where(x < (lower + val) * np.float32(0.5), lower_pivot, pivot)
    return np.where(x > val, above, below)


def _reference_step(state: dict, p: np.ndarray, g: np.ndarray, lr, betas, eps, wd, step):
    """bitsandbytes' kOptimizerStatic8bit2StateBlockwise for Adam, in numpy float32: (p, codes1, codes2,
    absmax1, absmax2) after the step."""
    f = np.float32
    c1, c2 = state["qmap1"].numpy(), state["qmap2"].numpy()
    blocks = lambda v: v.reshape(-1, QBLOCK)
    s1 = (blocks(c1[state["state1"].numpy()]) * state["absmax1"].numpy()[:, None]).reshape(-1)
    s2 = (blocks(c2[state["state2"].numpy()]) * state["absmax2"].numpy()[:, None]).reshape(-1)
    s2 = s2 * f(betas[1]) + f(1 - betas[1]) * g * g
    s1 = s1 * f(betas[0]) + f(1 - betas[0]) * g
    a1, a2 = np.abs(blocks(s1)).max(1), np.abs(blocks(s2)).max(1)
    correction1, correction2 = 1 - betas[0] ** step, math.sqrt(1 - betas[1] ** step)
    p = p + f(-lr * correction2 / correction1) * (s1 / (np.sqrt(s2) + f(correction2 * eps)))
    if wd > 0:
        p = p * f(1 - lr * wd)
    with np.errstate(invalid="ignore"):  # an all-zero block: 0/0, as there
        q1 = _quantize_2d((blocks(s1) / a1[:, None]).reshape(-1), c1, True)
        q2 = _quantize_2d((blocks(s2) / a2[:, None]).reshape(-1), c2, False)
    flipped = np.signbit(c1[q1]) != np.signbit(s1)
    q1 = np.where(flipped, np.where(s1 > 0, q1 + 1, q1 - 1), q1) & 255
    return p, q1, q2, a1, a2


def _stepper(n: int, paged: bool = False, weight_decay: float = 0.01, seed: int = 0):
    torch.manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(n) * 0.1)
    cls = bnb.optim.PagedAdamW8bit if paged else bnb.optim.AdamW8bit
    opt = cls([p], lr=1e-2, weight_decay=weight_decay)
    assert DeviceAdamW8bit.takes(opt, p)
    return p, opt, DeviceAdamW8bit(opt, p)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_the_kernel_steps_bitsandbytes_state_by_its_cuda_algorithm(weight_decay):
    """Codes and block absmax exactly, weights to float rounding, over steps of large and small gradients
    (the first moment's codes cross zero) and an all-zero block (absmax 0, as padding in the flat buffer)."""
    n = QBLOCK * 24
    p, opt, stepper = _stepper(n, weight_decay=weight_decay)
    state, ok = opt.state[p], torch.ones(())
    for step in range(1, 7):
        g = torch.randn(n) * (1.0 if step % 3 else 1e-3)
        g[QBLOCK * 5:QBLOCK * 6] = 0.0
        p.grad = g
        want = _reference_step(state, p.detach().numpy().copy(), g.numpy(), 1e-2, (0.9, 0.999), 1e-8,
                               weight_decay, step)
        stepper.launch(ok, ok)
        stepper.advance()
        assert state["step"] == step
        np.testing.assert_array_equal(state["state1"].numpy(), want[1])
        np.testing.assert_array_equal(state["state2"].numpy(), want[2])
        np.testing.assert_array_equal(state["absmax1"].numpy(), want[3])
        np.testing.assert_array_equal(state["absmax2"].numpy(), want[4])
        np.testing.assert_allclose(p.detach().numpy(), want[0], rtol=1e-6, atol=1e-9)
    assert (state["state1"][QBLOCK * 5:QBLOCK * 6] == 255).all(), "bitsandbytes' code for a zero block's moment"


@pytest.mark.parametrize("loss,norm", [(math.nan, 1.0), (1.0, math.inf), (-math.inf, math.nan)])
def test_a_step_whose_loss_or_gradient_norm_is_not_finite_writes_nothing(loss, norm):
    p, opt, stepper = _stepper(QBLOCK * 16)
    p.grad = torch.randn_like(p)
    stepper.launch(torch.ones(()), torch.ones(()))  # a real step first: states that are not all zero
    stepper.advance()
    before = {k: v.clone() for k, v in opt.state[p].items() if isinstance(v, torch.Tensor)}
    weights = p.detach().clone()
    p.grad = torch.randn_like(p)
    stepper.launch(torch.tensor(loss), torch.tensor(norm))
    assert torch.equal(p.detach(), weights)
    assert all(torch.equal(opt.state[p][k], v) for k, v in before.items())


def test_it_takes_over_bitsandbytes_blockwise_adamw_of_one_flat_parameter_on_a_gpu_only():
    flat = torch.nn.Parameter(torch.zeros(QBLOCK * 32))
    assert DeviceAdamW8bit.takes(bnb.optim.AdamW8bit([flat]), flat)
    assert DeviceAdamW8bit.takes(bnb.optim.PagedAdamW8bit([flat]), flat)
    assert DeviceAdamW8bit.for_optimizer(bnb.optim.AdamW8bit([flat]), flat) is None, "a CPU: bitsandbytes' update"
    other = torch.nn.Parameter(torch.zeros(QBLOCK * 32))
    small = torch.nn.Parameter(torch.zeros(QBLOCK * 8))  # under bitsandbytes' 4,096: 32-bit states
    ragged = torch.nn.Parameter(torch.zeros(QBLOCK * 32 + 7))
    half = torch.nn.Parameter(torch.zeros(QBLOCK * 32, dtype=torch.float16))
    for opt, param in [(torch.optim.AdamW([flat]), flat), (bnb.optim.Lion8bit([flat]), flat),
                       (bnb.optim.AdamW([flat], optim_bits=32), flat), (bnb.optim.AdamW8bit([flat, other]), flat),
                       (bnb.optim.AdamW8bit([small]), small), (bnb.optim.AdamW8bit([ragged]), ragged),
                       (bnb.optim.AdamW8bit([half]), half)]:
        assert not DeviceAdamW8bit.takes(opt, param), (type(opt).__name__, param.shape, param.dtype)


def test_the_fast_step_skips_a_non_finite_step_on_the_device_and_counts_only_real_steps():
    cfg = preset("tiny")
    cfg.optimizer = "paged_adamw_8bit"
    trainer, model = _trainer(cfg, "fast")
    trainer.device_update = DeviceAdamW8bit(trainer.optimizer, trainer.flat.param)  # as on a GPU
    batches = _batches(2)
    assert not train_step(trainer, [batches[0]])["skipped"]
    state = trainer.optimizer.state[trainer.flat.param]
    before = {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    masters = trainer.flat.param.detach().clone()
    lr = trainer.optimizer.param_groups[0]["lr"]
    trainer.flat.masters[0].data[0, 0] = math.nan  # a NaN adapter weight: a NaN loss
    trainer.publish()
    assert train_step(trainer, [batches[1]])["skipped"]
    masters.view(-1)[0] = math.nan  # the one weight set above, as set
    assert torch.equal(trainer.flat.param.detach().nan_to_num(), masters.nan_to_num())
    assert all(torch.equal(state[k], v) for k, v in before.items())
    assert state["step"] == 1 and trainer.optimizer.param_groups[0]["lr"] == lr, "no step, no schedule"
