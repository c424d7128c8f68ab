"""--fused-projections' LoRA dropout in one Triton kernel: each member's own mask, from a seed drawn per forward.

A group (model.fused_projections) of G adapted linears that read one input x draws, forward, one dropout
mask per member over x repeated G times: xd_g = x * mask_g / (1 - p), kept with the masks for the backward
pass. torch's dropout kernel did it in 7 us for a group of two or three members of SmolLM2's step at batch 8
(3.3 us alone; 121 launches, 0.62 ms of its 7.8 ms graph: docs/benchmarks.md, issue 14, nineteenth round).
Here a kernel with wide grids draws four uniforms per Philox call (Triton's `randint4x`), reads x once per
member and writes xd and the masks in the same layout torch's kernel wrote them, so the backward pass
(model.lora_input_grad, or torch's kernels) reads them as before.

Its random numbers come from a seed per group and forward, not from torch's generator: `Seeds` holds one
int64 per group on the device, and a forward pre-hook on the decoder redraws them all in training with one
`random_` (torch's generator: inside a CUDA-graph capture each replay draws anew, a checkpoint's RNG state
restores them, a capture's fork_rng leaves them out). A layer recomputed under gradient checkpointing
reads its group's seed again and draws the same masks. The masks differ from torch's kernel's (another
stream of numbers, the same distribution), so a run trains alike, not bit for bit, against the revision
before; the same run resumed is bit for bit.

Where: CUDA in bfloat16 or float16, or a CPU under Triton's interpreter in float32 (the tests); not under
torch.compile (grouped_ops traces torch's dropout there). Inside a CUDA-graph capture only a specialization
that already ran outside one (as model.fused_rope). Elsewhere the group calls torch's dropout."""

from __future__ import annotations

import torch

from nli_qlora.infra.lazy_triton import triton_kernel
from nli_qlora.model.fused_rope import KERNEL_DTYPES, runs_on, specialization

_RAN: set[tuple] = set()  # specializations whose kernel ran outside a capture
# Philox calls a program; each gives four uniforms, so a program covers 4 * BLOCK values. Triton's interpreter
# (the CPU tests) runs one program at a time, each as numpy arrays: there few wide programs are fastest
BLOCK = {"cuda": 512, "cpu": 8192}


class Seeds:
    """One seed per group on the model's device, redrawn before each training forward of the decoder."""

    def __init__(self, groups: int, device: torch.device):
        self.values = torch.zeros(groups, dtype=torch.int64, device=device)  # one buffer: a graph reads it in place

    def draw(self, module: torch.nn.Module, args) -> None:
        """The decoder's forward pre-hook: new seeds in training (evaluation draws no dropout)."""
        if module.training:
            self.values.random_(0, 2**62)


@triton_kernel
def kernel(triton, tl):
    """The Triton kernel, compiled at its first launch; None without Triton."""

    @triton.jit
    def lora_dropout(x_ptr, seed_ptr, out_ptr, mask_ptr, NK, K, sxn, sxk, index, p, scale, BLOCK: tl.constexpr):
        g = tl.program_id(1)
        seed = tl.load(seed_ptr + index)
        lanes = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        # member g's counters follow member g-1's: one seed, G streams that never overlap
        r0, r1, r2, r3 = tl.randint4x(seed, g * tl.cdiv(NK, 4 * BLOCK) * BLOCK + lanes)
        for j in tl.static_range(4):
            r = r0 if j == 0 else (r1 if j == 1 else (r2 if j == 2 else r3))
            e = tl.program_id(0) * 4 * BLOCK + j * BLOCK + tl.arange(0, BLOCK)
            inside = e < NK
            x = tl.load(x_ptr + (e // K) * sxn + (e % K) * sxk, mask=inside, other=0.0).to(tl.float32)
            keep = tl.uint_to_uniform_float(r) >= p
            tl.store(out_ptr + g * NK + e, tl.where(keep, x * scale, 0.0).to(out_ptr.dtype.element_ty), mask=inside)
            tl.store(mask_ptr + g * NK + e, keep, mask=inside)

    return lora_dropout


def _key(x2: torch.Tensor, seeds: torch.Tensor, index: int) -> tuple:
    """What Triton specializes the launch on, or finer: every integer argument and the inputs' pointers
    (the outputs are fresh)."""
    n, k = x2.shape
    return (x2.device, x2.dtype, specialization(n * k, k, *x2.stride(), index, x2.data_ptr(), seeds.data_ptr()))


def applies(x2: torch.Tensor, groups: int, seeds: torch.Tensor, index: int, capturing: bool) -> bool:
    """Whether this forward may run the kernel: Triton where x is, its dtype (see the module's docstring),
    not compiling, 32-bit offsets; inside a capture only a specialization already loaded."""
    if torch.compiler.is_compiling() or not runs_on(x2.device) or seeds.device != x2.device or kernel() is None:
        return False
    if x2.dtype not in KERNEL_DTYPES[x2.device.type] or groups * x2.numel() >= 2**31:
        return False  # (the kernel's offsets are 32-bit)
    return not capturing or _key(x2, seeds, index) in _RAN


def lora_dropout(x2: torch.Tensor, groups: int, p: float, seeds: torch.Tensor, index: int,
                 capturing: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(xd [G, N, K], mask [G, N, K] bool): member g's x2 [N, K] with its own mask, kept values scaled by
    1 / (1 - p), from seeds[index]."""
    n, k = x2.shape
    out = torch.empty(groups, n, k, device=x2.device, dtype=x2.dtype)
    mask = torch.empty(groups, n, k, device=x2.device, dtype=torch.bool)
    block = BLOCK[x2.device.type]
    kernel()[(-(-(n * k) // (4 * block)), groups)](x2, seeds, out, mask, n * k, k, *x2.stride(), index, p,
                                                   1.0 / (1.0 - p), BLOCK=block)
    if not capturing:
        _RAN.add(_key(x2, seeds, index))
    return out, mask
