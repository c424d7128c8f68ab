"""--fused-projections' LoRA input gradient in one Triton kernel: the members' products, masks and sum.

A group (model.fused_projections) of G adapted linears that read one input x gets, backward, the
input gradient of each member's LoRA branch through its own dropout mask, summed over the members:

    dx_lora = sum_g mask_g * (dt_g @ A_g) / (1 - p)          dt_g: [N, r], A_g: [r, K], mask_g: [N, K]

which the base's input-gradient matmul then adds in (its addmm's bias). That took three kernels (a
batched matmul writing G products of [N, K], the dropout's masked scale over all of them, a sum over
the members; two for a group of one): 180 kernels of SmolLM2's step at batch 8. Here one kernel reads
dt, the A weights and the masks torch's dropout drew, accumulates the G products in float32 and writes
dx_lora once: the same masks, the same function, one rounding instead of three. On one H200, SmolLM2's
shapes at batch 8 x 64 with the six speed options: 2,196 -> 2,018 kernels and 8.12 -> 7.76 ms of GPU work
a step, the loop's median step 9.2-9.3 -> 8.6-8.8 ms (docs/benchmarks.md, issue 14,
nineteenth round; regenerating the masks inside the kernels instead, so that none is stored, made the
graph 12.3 ms: Philox per element in kernels of few programs).

Where: CUDA in bfloat16 or float16, or a CPU under Triton's interpreter in float32 (the tests); not
under torch.compile (the layers trace model.fused_projections.grouped_ops there). Inside a CUDA-graph
capture only a specialization that already ran outside one (as model.fused_rope). Elsewhere the group
runs torch's three kernels."""

from __future__ import annotations

import torch

from nli_qlora.infra.lazy_triton import triton_kernel
from nli_qlora.model.fused_rope import KERNEL_DTYPES, runs_on, specialization

_RAN: set[tuple] = set()  # specializations whose kernel ran outside a capture
BM, BK = 64, 64


@triton_kernel
def kernel(triton, tl):
    """The Triton kernel, compiled at its first launch; None without Triton."""

    @triton.jit
    def lora_input_grad(dt_ptr, a_ptr, mask_ptr, out_ptr, N, K, R, G, sdg, sdn, sdr, sag, sar, sak, smg, smn, smk,
                        son, sok, scale, HAS_MASK: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr, BR: tl.constexpr):
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        ks = tl.program_id(1) * BK + tl.arange(0, BK)
        rr = tl.arange(0, BR)
        inside = (rows[:, None] < N) & (ks[None, :] < K)
        acc = tl.zeros((BM, BK), dtype=tl.float32)
        for g in range(0, G):
            dt = tl.load(dt_ptr + g * sdg + rows[:, None] * sdn + rr[None, :] * sdr,
                         mask=(rows[:, None] < N) & (rr[None, :] < R), other=0.0)
            a = tl.load(a_ptr + g * sag + rr[:, None] * sar + ks[None, :] * sak,
                        mask=(rr[:, None] < R) & (ks[None, :] < K), other=0.0)
            product = tl.dot(dt, a)
            if HAS_MASK:
                keep = tl.load(mask_ptr + g * smg + rows[:, None] * smn + ks[None, :] * smk, mask=inside, other=0)
                product = tl.where(keep != 0, product, 0.0)
            acc += product
        tl.store(out_ptr + rows[:, None] * son + ks[None, :] * sok, (acc * scale).to(out_ptr.dtype.element_ty), mask=inside)

    return lora_input_grad


def _key(dt: torch.Tensor, stack: torch.Tensor, mask: torch.Tensor | None) -> tuple:
    """What Triton specializes the launch on, or finer (never coarser: a coarser key could let a capture
    meet an unloaded kernel): every integer argument and the inputs' pointers (the output is fresh)."""
    g, n, r = dt.shape
    ints = [n, stack.shape[2], r, g, *dt.stride(), *stack.stride(), dt.data_ptr(), stack.data_ptr()]
    if mask is not None:
        ints += [*mask.stride(), mask.data_ptr()]
    return (dt.device, dt.dtype, mask is not None, r, specialization(*ints))


def applies(dt: torch.Tensor, stack: torch.Tensor, mask: torch.Tensor | None, capturing: bool) -> bool:
    """Whether this backward may run the kernel: Triton where the tensors are, the dtype (see the
    module's docstring), not compiling; inside a capture only a specialization already loaded."""
    if torch.compiler.is_compiling() or not runs_on(dt.device) or kernel() is None:
        return False
    if dt.dtype not in KERNEL_DTYPES[dt.device.type] or stack.dtype != dt.dtype or dt.shape[-1] > 128:
        return False  # (r above 128: a tile of registers too large)
    if max(dt.numel(), stack.numel(), mask.numel() if mask is not None else 0) >= 2**31:
        return False  # the kernel's offsets are 32-bit
    return not capturing or _key(dt, stack, mask) in _RAN


def lora_input_grad(dt: torch.Tensor, stack: torch.Tensor, mask: torch.Tensor | None, p: float,
                    capturing: bool) -> torch.Tensor:
    """[N, K] = sum_g mask_g * (dt_g @ stack_g) / (1 - p), for dt [G, N, r], stack [G, r, K], mask [G, N, K]
    (bool; None: no dropout)."""
    g, n, r = dt.shape
    k = stack.shape[2]
    out = torch.empty(n, k, device=dt.device, dtype=dt.dtype)
    ms = mask.stride() if mask is not None else (0, 0, 0)
    kernel()[(-(-n // BM), -(-k // BK))](dt, stack, mask if mask is not None else dt, out, n, k, r, g, *dt.stride(),
                                         *stack.stride(), *ms, *out.stride(), 1.0 / (1.0 - p), HAS_MASK=mask is not None,
                                         BM=BM, BK=BK, BR=max(16, 1 << (r - 1).bit_length()))
    if not capturing:
        _RAN.add(_key(dt, stack, mask))
    return out
