"""--fused-projections' LoRA dropout in one Triton kernel (model.lora_dropout), run in Triton's interpreter in
float32 (tests/conftest.py): the kept values scaled, a mask per member, the seed's masks and no other, the
grouped update's values and gradients under them, new seeds before each training forward of the decoder and
none in evaluation, and the capture gate."""

import dataclasses

import pytest
import torch

from nli_qlora.config import preset
from nli_qlora.model import lora_dropout
from nli_qlora.model.bundle import load_bundle, with_lora
from nli_qlora.model.fused_projections import GroupedLora
from nli_qlora.model.fused_rope import runs_on
from tests.test_lora_input_grad import _float32

pytestmark = pytest.mark.skipif(lora_dropout.kernel() is None or not runs_on(torch.device("cpu")),
                                reason="needs Triton and its interpreter on a CPU")

SEEDS = torch.tensor([11, 12345, 2**61 + 7], dtype=torch.int64)


def _drop(x2, groups=3, p=0.3, index=1, seeds=SEEDS):
    return lora_dropout.lora_dropout(x2, groups, p, seeds, index, capturing=False)


def test_each_member_keeps_its_own_values_scaled_and_zeroes_the_rest():
    x2 = torch.randn(37, 70)  # 2,590 values: a partial last block
    out, mask = _drop(x2)
    assert out.shape == mask.shape == (3, 37, 70) and mask.dtype == torch.bool
    torch.testing.assert_close(out, x2 * mask / 0.7, rtol=1e-6, atol=0)
    kept = mask.float().mean().item()
    assert abs(kept - 0.7) < 0.05, kept  # 7,770 draws at p = 0.3
    assert (mask[0] != mask[1]).any() and (mask[1] != mask[2]).any()  # a mask of its own, as in peft


def test_a_seed_gives_its_masks_and_no_other():
    x2 = torch.randn(37, 70)
    first, again = _drop(x2)[1], _drop(x2)[1]
    assert torch.equal(first, again)
    assert not torch.equal(first, _drop(x2, index=2)[1])  # another group's seed
    # a strided input (a transposed view) reads the same values and draws the same masks
    strided = x2.t().contiguous().t()
    assert not strided.is_contiguous()
    out, mask = _drop(strided)
    assert torch.equal(mask, first)
    torch.testing.assert_close(out, x2 * mask / 0.7, rtol=1e-6, atol=0)


@pytest.mark.parametrize("widths", [(5,), (5, 3, 3), (4, 4, 4, 7)])
def test_the_grouped_update_computes_and_differentiates_what_the_kernels_masks_give(widths):
    scales, p = tuple(2.0 - 0.25 * i for i in range(len(widths))), 0.3
    x, weight, b, a, bb = _float32(p, widths, n_in=70, r=4)
    seed = (SEEDS, 2)
    got = GroupedLora.apply(x, weight, b, p, scales, widths, seed, *a, *bb)
    got_grads = torch.autograd.grad(got.square().sum(), (x, *a, *bb))
    x2 = x.reshape(-1, x.shape[-1])
    xd = lora_dropout.lora_dropout(x2.detach(), len(widths), p, *seed, capturing=False)[1] * x2 / (1 - p)
    base = torch.nn.functional.linear(x2, weight, b)
    cols, offset = [], 0
    for i, w in enumerate(widths):  # peft's arithmetic member by member, under the kernel's masks
        cols.append(base[:, offset:offset + w] + scales[i] * (xd[i] @ a[i].t()) @ bb[i].t())
        offset += w
    expected = torch.cat(cols, dim=1).view(*x.shape[:-1], -1)
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, *a, *bb))
    torch.testing.assert_close(got, expected)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5 * e.abs().max().item())


def test_each_training_forward_draws_new_seeds_and_evaluation_none():
    cfg = dataclasses.replace(preset("tiny"), lora_dropout=0.1, dequantize_base=True, fused_lora=True,
                              fused_projections=True)
    model = with_lora(load_bundle(cfg, torch.device("cpu"))).model
    with torch.no_grad():  # new adapters add nothing (B = 0): give them a part the masks change
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    groups = {m._nli_group[0] for m in model.modules() if hasattr(m, "_nli_group")}
    seeds = {id(g.seed[0]) for g in groups}
    assert len(seeds) == 1 and sorted(g.seed[1] for g in groups) == list(range(len(groups)))
    values = next(iter(groups)).seed[0]
    decoder = model.get_base_model().get_decoder()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    model.train()
    first = decoder(input_ids=ids).last_hidden_state
    drawn = values.clone()
    second = decoder(input_ids=ids).last_hidden_state
    assert not torch.equal(values, drawn) and not torch.equal(first, second)  # new masks each forward
    model.eval()
    state, before = torch.get_rng_state(), values.clone()
    with torch.no_grad():
        decoder(input_ids=ids)
    assert torch.equal(values, before) and torch.equal(torch.get_rng_state(), state)


def test_inside_a_capture_only_a_specialization_that_ran_outside_one():
    x2 = torch.randn(16, 32)
    seeds = torch.arange(20, dtype=torch.int64)
    lora_dropout._RAN.clear()
    assert lora_dropout.applies(x2, 3, seeds, 2, capturing=False)
    assert not lora_dropout.applies(x2, 3, seeds, 2, capturing=True)
    _drop(x2, index=2, seeds=seeds)
    assert lora_dropout.applies(x2, 3, seeds, 2, capturing=True)
    assert lora_dropout.applies(x2, 3, seeds, 3, capturing=True)  # index 3: the same specialization as 2
    assert not lora_dropout.applies(x2, 3, seeds, 1, capturing=True)  # Triton specializes the value 1
    assert not lora_dropout.applies(x2, 3, seeds, 16, capturing=True)  # and divisibility by 16
    assert not lora_dropout.applies(torch.randn(16, 33), 3, seeds, 2, capturing=True)  # another width
    assert not lora_dropout.applies(x2.double(), 3, seeds, 2, capturing=False)  # float32 only here
    huge = torch.ones((), dtype=torch.float32).expand(2**20, 2**10)
    assert not lora_dropout.applies(huge, 3, seeds, 2, capturing=False)  # 3 x 2**30 values: 32-bit offsets
