"""--fused-projections' LoRA input gradient in one Triton kernel (model.lora_input_grad), run in Triton's
interpreter in float32 (tests/conftest.py): with the masks torch's dropout drew, the grouped update's input
gradient is the formula's, and the backward pass runs no masked scale, sum or batched matmul for it."""

import pytest
import torch

from nli_qlora.model import lora_input_grad
from nli_qlora.model.fused_projections import GroupedLora
from nli_qlora.model.fused_rope import runs_on
from tests.test_fused_projections import _Ops, _operands, _reference

pytestmark = pytest.mark.skipif(lora_input_grad.kernel() is None or not runs_on(torch.device("cpu")),
                                reason="needs Triton and its interpreter on a CPU")


def _float32(p, widths, **kw):
    x, weight, b, a, bb = _operands(p, widths, **kw)
    cast = lambda t: None if t is None else t.detach().float().requires_grad_(t.requires_grad)
    return cast(x), cast(weight), cast(b), [cast(t) for t in a], [cast(t) for t in bb]


@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("widths", [(5,), (4, 4), (5, 3, 3), (4, 4, 4, 7)])
def test_one_kernel_gives_the_input_gradient_of_the_formula_under_the_same_masks(widths, p):
    scales = tuple(2.0 - 0.25 * i for i in range(len(widths)))
    x, weight, b, a, bb = _float32(p, widths, n_in=70, r=4)  # 70 columns: a partial second tile
    torch.manual_seed(5)
    got = GroupedLora.apply(x, weight, b, p, scales, widths, None, *a, *bb)
    loss = got.square().sum()
    with _Ops() as ops:
        got_grads = torch.autograd.grad(loss, (x, *a, *bb))
    torch.manual_seed(5)  # the same single dropout call: the same masks
    expected = _reference(x, weight, b, a, bb, p, scales, widths)
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, *a, *bb))
    torch.testing.assert_close(got, expected)
    for g, e in zip(got_grads, expected_grads):  # float32 sums in another order: within 1e-5 of the largest
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5 * e.abs().max().item())
    if p > 0 or len(widths) > 1:  # (a group of one without dropout keeps its one matmul)
        assert not {"native_dropout_backward", "sum"} & set(ops.names), ops.names
        assert ops.names.count("bmm") == 1  # the A gradients' only


def test_inside_a_capture_only_a_specialization_that_ran_outside_one():
    dt, stack = torch.randn(3, 16, 4), torch.randn(3, 4, 32)
    mask = torch.rand(3, 16, 32) > 0.1
    lora_input_grad._RAN.clear()
    assert lora_input_grad.applies(dt, stack, mask, capturing=False)
    assert not lora_input_grad.applies(dt, stack, mask, capturing=True)
    out = lora_input_grad.lora_input_grad(dt, stack, mask, 0.1, capturing=False)
    assert lora_input_grad.applies(dt, stack, mask, capturing=True)
    assert not lora_input_grad.applies(dt, stack, None, capturing=True)  # without a mask: another specialization
    expected = (torch.bmm(dt, stack) * mask / 0.9).sum(0)
    torch.testing.assert_close(out, expected)
    assert not lora_input_grad.applies(dt.double(), stack.double(), mask, capturing=False)  # float32 only here
    huge = torch.ones((), dtype=torch.bool).expand(3, 2**20, 2**10)  # 3 x 2**30 values, one byte of memory
    assert not lora_input_grad.applies(dt, stack, huge, capturing=False)  # the kernel's offsets are 32-bit
