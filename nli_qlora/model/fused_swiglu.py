"""SiLU(gate) * up read from --fused-projections' one gate|up output: one Triton kernel each way.

transformers' gated MLP computes down_proj(act_fn(gate_proj(x)) * up_proj(x)). Under
--fused-projections gate and up are already one matmul whose [.., 2I] output holds gate's columns,
then up's; the MLP then ran a SiLU and a multiply forward, and backward two multiplies, SiLU's
gradient and a concatenation of the two gradients into the group's: six kernels, where
Liger-Kernel's fused gate-up SwiGLU (`liger_kernel.ops.swiglu.swiglu_fused_gate_up_*`) reads both
halves of that one tensor and writes the gradient of both into one, two. On one H200 that took
SmolLM2's step from 2,316 to 2,196 kernels (docs/benchmarks.md, issue 14, eighteenth round). The kernel is Liger-Kernel's, maintained and tested, called unchanged; the
autograd function is ours only to know, as model.fused_rope does, when its kernels have loaded.

Where: each gated MLP whose gate_proj and up_proj form a group of their own (gate first, equal
widths) gets a forward that asks the group for its whole output. It is installed only if the MLP's
own forward computes that formula, checked once per MLP class on one layer (the same input, the same
dropout masks, the same values). Elsewhere (a compiled layer, whose traced SiLU and multiply inductor
fuses; no liger-kernel; a CPU without Triton's interpreter; bfloat16 in the interpreter) the MLP
computes silu(gate) * up over the two column views, the same arithmetic as transformers' code.

Rounding: the kernel computes SiLU in float32 and rounds it to the inputs' dtype before the
multiply, as transformers' bfloat16 code does; it may differ in the last place. Runs with and
without liger-kernel train alike, not bit for bit.

CUDA graphs: as model.fused_rope, inside a capture the kernel runs only where its forward (and, when
a gradient will flow, its backward) specialization has already run outside one in this process."""

from __future__ import annotations

import functools
import types

import torch

from nli_qlora.model.fused_rope import capturing, runs_on

_RAN_FORWARD: set[tuple] = set()  # specializations whose kernel ran outside a capture
_RAN_BACKWARD: set[tuple] = set()


@functools.cache
def liger_swiglu():
    """Liger-Kernel's swiglu module when it has the fused gate-up kernels, else None (torch's ops run)."""
    try:
        from liger_kernel.ops import swiglu
    except ImportError:
        return None
    return swiglu if hasattr(swiglu, "swiglu_fused_gate_up_forward") else None


def _key(y: torch.Tensor) -> tuple:
    """What Triton specializes the kernels on, or finer: device, dtype, the widths, 16-byte alignment."""
    return (y.device, y.dtype, y.shape[-1], y.data_ptr() % 16 == 0)


def reference(y: torch.Tensor) -> torch.Tensor:
    gate, up = y.chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * up


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y):
        y, c = liger_swiglu().swiglu_fused_gate_up_forward(y)  # (y viewed as rows; c [.., I])
        ctx.save_for_backward(y)
        ctx.key = _key(y)
        if not capturing(y):
            _RAN_FORWARD.add(ctx.key)
        return c

    @staticmethod
    def backward(ctx, dc):
        (y,) = ctx.saved_tensors
        dy = liger_swiglu().swiglu_fused_gate_up_backward(y, dc.contiguous())
        if not capturing(dc):
            _RAN_BACKWARD.add(ctx.key)
        return dy.view(*dc.shape[:-1], y.shape[-1])


def kernel_applies(y: torch.Tensor, capturing: bool) -> bool:
    """Whether this call may run the kernel (as model.fused_rope.kernel_applies: inside a capture only a
    specialization already loaded, forward, and backward if a gradient will flow)."""
    if liger_swiglu() is None or not y.is_contiguous() or not runs_on(y.device):
        return False
    if y.device.type == "cpu" and y.dtype != torch.float32:
        return False  # (Triton's interpreter returns garbage for bfloat16: float32 only there)
    if capturing:
        key = _key(y)
        return key in _RAN_FORWARD and (not (torch.is_grad_enabled() and y.requires_grad) or key in _RAN_BACKWARD)
    return True


def swiglu(y: torch.Tensor) -> torch.Tensor:
    """silu(y's first half) * y's second half, the kernel where it applies."""
    if torch.compiler.is_compiling() or not kernel_applies(y, capturing(y)):
        return reference(y)
    return _SwiGLU.apply(y)


def _gate_up_group(mlp: torch.nn.Module):
    """The group gate_proj and up_proj form, gate first, of equal widths, nothing else in it; or None."""
    gate, up = getattr(mlp, "gate_proj", None), getattr(mlp, "up_proj", None)
    found = getattr(gate, "_nli_group", None)
    if found is None or getattr(up, "_nli_group", (None,))[0] is not found[0] or not hasattr(mlp, "down_proj"):
        return None
    group = found[0]
    if group.members != [gate, up] or group.widths[0] != group.widths[1]:
        return None
    return group


def fused_forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self._nli_gate_up.whole(x)
    if y is None:  # not the plain case (model.fused_projections.Group.adapters): the MLP's own code
        return type(self).forward(self, x)
    return self.down_proj(swiglu(y))


@torch.no_grad()
def _computes_swiglu(mlp: torch.nn.Module, group) -> bool:
    """Whether the MLP's own forward is down_proj(silu(gate_proj(x)) * up_proj(x)): one small input
    through both, the same dropout masks. Through the members, not the group's whole output: at load
    time the adapters may not compute in the model's dtype yet (the trainer seats bfloat16 copies)."""
    weight = group.weight
    x = torch.randn(1, 3, weight.shape[1], device=weight.device, dtype=weight.dtype)
    formula = lambda: mlp.down_proj(torch.nn.functional.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
    outs = []
    for compute in (lambda: type(mlp).forward(mlp, x), formula):
        with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
            torch.manual_seed(0)
            try:
                outs.append(compute())
            except Exception:  # another signature: not this formula
                return False
    return outs[0].shape == outs[1].shape and torch.equal(outs[0], outs[1])


def fuse_swiglu_(model: torch.nn.Module) -> int:
    """Give each gated MLP over a gate|up group the forward above (in place); the count. Called by
    fuse_projections_ once the groups exist."""
    checked: dict[type, bool] = {}
    count = 0
    for module in model.modules():
        group = _gate_up_group(module)
        if group is None:
            continue
        cls = type(module)
        if cls not in checked:
            checked[cls] = _computes_swiglu(module, group)
        if checked[cls]:
            module._nli_gate_up = group
            module.forward = types.MethodType(fused_forward, module)
            count += 1
    return count


def unfuse_swiglu_(model: torch.nn.Module) -> None:
    """The MLPs' own forward back (the benchmarks turn the fused forwards off between cases on one model)."""
    for module in model.modules():
        if getattr(vars(module).get("forward"), "__func__", None) is fused_forward:
            del module.forward


def fused_swiglu_count(model: torch.nn.Module) -> int:
    return sum(1 for m in model.modules() if getattr(vars(m).get("forward"), "__func__", None) is fused_forward)
