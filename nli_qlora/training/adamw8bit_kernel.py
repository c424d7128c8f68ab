"""bitsandbytes' blockwise 8-bit AdamW update of the flat LoRA buffer in one Triton kernel that decides on the
device whether to step.

The fast step read the loss and the gradient norm back (its one host sync) and only then ran bitsandbytes'
update: its Python, a device sync after the update and another for paged states, and a 0.31 ms kernel, with
the GPU idle while the host launched it. That was 0.53-0.70 ms of SmolLM2's 8.3-8.6 ms step on an H200
(docs/benchmarks.md, issue 14, twentieth round). Here the update is queued behind the clipping, before the
read-back; the kernel reads the loss and the gradient norm itself, and a step where either is not finite
writes nothing, as the host's check skips it.

Nothing else changes hands: bitsandbytes' optimizer keeps its state (the 8-bit codes of both moments, paged
or not, their block absmax, the quantile maps, the step count), so checkpoints and resume are as before, and
the eager step and CPUs run bitsandbytes' own update. The arithmetic is that of bitsandbytes' CUDA kernel
(kOptimizerStatic8bit2StateBlockwise, blocks of 256): dequantize, the moments, the bias-corrected update, the
decoupled weight decay after it, the new block absmax, and the requantization by its binary search, midpoint
rounding and sign fix of the first moment. The float rounding is not bit for bit (its fast-math intrinsics
against Triton's): tests/test_adamw8bit_kernel.py holds it to a port of that algorithm, tests/test_step_modes.py
a training step with it to the eager step, scripts/gpu_smoke.sh (scripts/check_adamw8bit.py) to the CUDA kernel.

The fast step takes the kernel on CUDA only: in Triton's interpreter, where the CPU tests run it, an update of
123K values took 0.13 s (bitsandbytes' CPU update 3 ms). `NLI_QLORA_KERNEL_UPDATE=1` makes it take the kernel on
a CPU too, for the tests of what only the kernel's update allows: the loop queuing the next step's forward and
backward before the read-back (training.step.queue_next)."""

from __future__ import annotations

import math
import os

import torch

from nli_qlora.infra.lazy_triton import triton_kernel

QBLOCK = 256  # bitsandbytes' block of the 8-bit optimizers: one absmax per 256 values
# blocks a program: wide programs on a CPU, where Triton's interpreter runs one program at a time
ROWS = {"cuda": 4, "cpu": 256}


@triton_kernel
def kernel(triton, tl):
    """(the Triton kernel, its quantizer to pass it), compiled at the first launch; None without Triton."""

    @triton.jit
    def quantize(x, code_ptr, SIGNED: tl.constexpr):
        """bitsandbytes' quantize_2D: seven halvings from the middle code, then the nearer side of a midpoint
        (the outer bounds are -1 or 0 and 1, not the map's ends, as there)."""
        pivot = tl.full(x.shape, 127, tl.int32)
        lower_pivot = tl.zeros(x.shape, tl.int32)
        upper_pivot = tl.full(x.shape, 255, tl.int32)
        if SIGNED:
            lower = tl.full(x.shape, -1.0, tl.float32)
        else:
            lower = tl.zeros(x.shape, tl.float32)
        upper = tl.full(x.shape, 1.0, tl.float32)
        val = tl.load(code_ptr + pivot)
        for i in tl.static_range(7):
            up = x > val
            lower_pivot = tl.where(up, pivot, lower_pivot)
            lower = tl.where(up, val, lower)
            upper_pivot = tl.where(up, upper_pivot, pivot)
            upper = tl.where(up, upper, val)
            pivot = tl.where(up, pivot + (64 >> i), pivot - (64 >> i))
            val = tl.load(code_ptr + pivot)
        above = tl.where(x > (upper + val) * 0.5, upper_pivot, pivot)
        below = tl.where(x < (lower + val) * 0.5, lower_pivot, pivot)
        return tl.where(x > val, above, below)

    @triton.jit
    def adamw8bit(p_ptr, g_ptr, c1_ptr, c2_ptr, absmax1_ptr, absmax2_ptr, qmap1_ptr, qmap2_ptr, loss_ptr, norm_ptr,
                  blocks, beta1, beta2, eps_hat, step_size, decay, DECAY: tl.constexpr, ROWS: tl.constexpr,
                  QBLOCK: tl.constexpr, QUANTIZE: tl.constexpr):
        # the go-ahead: the loss and the gradient norm are finite (NaN fails the comparison too); no block is
        # live in a step that does not go ahead
        finite_loss = (tl.abs(tl.load(loss_ptr).to(tl.float32)) <= 3.4028234663852886e38).to(tl.int32)
        finite_norm = (tl.abs(tl.load(norm_ptr).to(tl.float32)) <= 3.4028234663852886e38).to(tl.int32)
        limit = blocks * finite_loss * finite_norm
        rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        live = rows < limit
        offs = rows[:, None] * QBLOCK + tl.arange(0, QBLOCK)[None, :]
        mask = offs < limit * QBLOCK
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        c1 = tl.load(c1_ptr + offs, mask=mask, other=128).to(tl.int32)
        c2 = tl.load(c2_ptr + offs, mask=mask, other=0).to(tl.int32)
        s1 = tl.load(qmap1_ptr + c1) * tl.load(absmax1_ptr + rows, mask=live, other=0.0)[:, None]
        s2 = tl.load(qmap2_ptr + c2) * tl.load(absmax2_ptr + rows, mask=live, other=0.0)[:, None]
        s2 = s2 * beta2 + (1.0 - beta2) * g * g
        s1 = s1 * beta1 + (1.0 - beta1) * g
        new1 = tl.max(tl.abs(s1), axis=1)
        new2 = tl.max(tl.abs(s2), axis=1)
        tl.store(absmax1_ptr + rows, new1, mask=live)
        tl.store(absmax2_ptr + rows, new2, mask=live)
        p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        p = p + step_size * (s1 / (tl.sqrt(s2) + eps_hat))
        if DECAY:
            p = p * decay  # decoupled, after the update, as bitsandbytes
        tl.store(p_ptr + offs, p.to(p_ptr.dtype.element_ty), mask=mask)
        q1 = QUANTIZE(s1 / tl.where(new1 > 0.0, new1, 1.0)[:, None], qmap1_ptr, True)
        q2 = QUANTIZE(s2 / tl.where(new2 > 0.0, new2, 1.0)[:, None], qmap2_ptr, False)
        # the first moment keeps its sign through the codes: one code towards it where the nearest crossed zero
        flipped = (tl.load(qmap1_ptr + q1).to(tl.int32, bitcast=True) < 0) != (s1.to(tl.int32, bitcast=True) < 0)
        q1 = tl.where(flipped, tl.where(s1 > 0.0, q1 + 1, q1 - 1), q1) & 255
        # a block of zeros (the flat buffer's padding): bitsandbytes divides 0 by 0 there, its search ends at code 0
        # and the sign fix turns the first moment's to 255; the same codes, written without the NaN
        q1 = tl.where(new1[:, None] > 0.0, q1, 255)
        q2 = tl.where(new2[:, None] > 0.0, q2, 0)
        tl.store(c1_ptr + offs, q1.to(tl.uint8), mask=mask)
        tl.store(c2_ptr + offs, q2.to(tl.uint8), mask=mask)

    return adamw8bit, quantize


def update(p: torch.Tensor, g: torch.Tensor, state: dict, loss: torch.Tensor, grad_norm: torch.Tensor, *,
           lr: float, betas: tuple[float, float], eps: float, weight_decay: float, step: int) -> None:
    """One AdamW step of `p` (float32, contiguous, a whole number of blocks) by gradient `g` at `step` (1 for
    the first), on bitsandbytes' 8-bit `state` in place, unless `loss` or `grad_norm` is not finite. The bias
    corrections are folded on the host into the step size and the denominator's epsilon, as bitsandbytes
    folds them in its kernel."""
    beta1, beta2 = betas
    correction1 = 1.0 - beta1 ** step
    correction2 = math.sqrt(1.0 - beta2 ** step)
    blocks = p.numel() // QBLOCK
    rows = ROWS[p.device.type]
    adamw8bit, quantize = kernel()
    adamw8bit[(-(-blocks // rows),)](
        p, g, state["state1"], state["state2"], state["absmax1"], state["absmax2"], state["qmap1"], state["qmap2"],
        loss, grad_norm, blocks, beta1, beta2, correction2 * eps, -lr * correction2 / correction1,
        1.0 - lr * weight_decay, DECAY=weight_decay > 0.0, ROWS=rows, QBLOCK=QBLOCK, QUANTIZE=quantize)


class DeviceAdamW8bit:
    """bitsandbytes' AdamW8bit or PagedAdamW8bit over the one flat parameter, stepped by `kernel()`.

    `launch` queues the update without reading anything back; once the caller has read the loss and the
    gradient norm, `advance` counts the step where they were finite (bitsandbytes' step count, which its
    state dict saves). The fast step builds it with `for_optimizer`, which says None where bitsandbytes must
    step itself; the CPU tests build it directly, for Triton's interpreter."""

    def __init__(self, optimizer, param: torch.Tensor):
        self.optimizer, self.param = optimizer, param
        group = optimizer.param_groups[0]
        state = optimizer.state[param]
        if not state:  # bitsandbytes makes its state at its first step; the kernel needs it before
            if not optimizer.initialized:
                optimizer.check_overrides()
                optimizer.to_gpu()
                optimizer.initialized = True
            optimizer.init_state(group, param, 0, 0)

    @staticmethod
    def for_optimizer(optimizer, param: torch.Tensor) -> DeviceAdamW8bit | None:
        """The kernel's stepper over `param` on a GPU, as the fast step builds it; None elsewhere and for the
        optimizers and settings it does not take (bitsandbytes then steps as before)."""
        on_cpu = os.environ.get("NLI_QLORA_KERNEL_UPDATE") == "1"  # tests: Triton's interpreter
        if not (param.is_cuda or on_cpu) or kernel() is None or not DeviceAdamW8bit.takes(optimizer, param):
            return None
        return DeviceAdamW8bit(optimizer, param)

    @staticmethod
    def takes(optimizer, param: torch.Tensor) -> bool:
        """Whether the kernel computes this optimizer's update: bitsandbytes' blockwise 8-bit AdamW (paged or not)
        over `param` alone, float32 in whole blocks, 8-bit states, no per-parameter overrides."""
        if param.dtype != torch.float32 or param.numel() % QBLOCK:
            return False
        try:
            from bitsandbytes.optim.optimizer import Optimizer2State
        except ImportError:
            return False
        if not isinstance(optimizer, Optimizer2State) or optimizer.optimizer_name != "adam":
            return False
        args = optimizer.args
        if (args.optim_bits != 8 or getattr(args, "percentile_clipping", 100) < 100 or args.max_unorm > 0
                or args.skip_zeros or param.numel() < args.min_8bit_size or (0, 0) in optimizer.mng.index2config
                or id(param) in optimizer.mng.pid2config):
            return False
        groups = optimizer.param_groups
        return (len(groups) == 1 and len(groups[0]["params"]) == 1 and groups[0]["params"][0] is param
                and len(groups[0]["betas"]) == 2)

    def launch(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """Queue the update of the next step, which the device skips where `loss` or `grad_norm` is not finite."""
        group, state = self.optimizer.param_groups[0], self.optimizer.state[self.param]
        if getattr(state["state1"], "is_paged", False):  # bring paged states back to the device first, as bitsandbytes
            import bitsandbytes.functional as F
            F.prefetch_tensor(state["state1"])
            F.prefetch_tensor(state["state2"])
        update(self.param, self.param.grad, state, loss, grad_norm, lr=group["lr"], betas=tuple(group["betas"]),
               eps=group["eps"], weight_decay=group["weight_decay"], step=state["step"] + 1)

    def advance(self) -> None:
        """The launched step was finite, so it stepped: count it."""
        self.optimizer.state[self.param]["step"] += 1
        self.optimizer._opt_called = True  # what optimizer.step() tells torch's LR scheduler (else it warns)
