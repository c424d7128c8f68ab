"""--fused-lora: each adapted layer's LoRA update in two matmuls instead of peft's five kernels.

peft computes `result = base(x).clone(); result = result + lora_B(lora_A(dropout(x))) * scale`:
a defensive clone, two matmuls, a multiply and an add in the forward pass, and the multiply again in
the backward one. At batch 8 a step is bound by the number of such small kernels, not by arithmetic
(docs/benchmarks.md, issue 14). Here the scale and the sum fold into the second matmul's epilogue
(`addmm(base_out, t, B^T, alpha=scale)`) and the backward pass's scale into its matmuls (`alpha`):
four kernels fewer per adapted layer and step.

The same function as peft's. On a CPU it rounds differently: the update is added in the matmul's
float32 accumulator and rounded once, where peft rounds the product, the scaled product and the sum.
On the lent H200 (torch 2.11, cuBLAS) bfloat16 addmm rounds the product before adding it, and the
update gives peft's bits exactly (docs/benchmarks.md, issue 14, eleventh round). It applies only
where the arithmetic is that plain: one active adapter, unmerged, no DoRA or other variant, no LoRA
bias, and the input, the adapter weights and the base output in one dtype (bfloat16 copies under
--lora-compute-dtype bfloat16 over a bfloat16 base; float32 on a CPU). Elsewhere the layer runs
peft's own forward. Weights, saving and loading are peft's: only `forward` is replaced."""

from __future__ import annotations

import types

import torch

from nli_qlora.config import fused_dtype_mismatch
from nli_qlora.infra.errors import UserError
from nli_qlora.model.fused_swiglu import unfuse_swiglu_


class LoraUpdate(torch.autograd.Function):
    """base_out + scale * (xd @ A^T) @ B^T, for xd the (dropped-out) input; grads for all four."""

    @staticmethod
    def forward(ctx, base_out: torch.Tensor, xd: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float):
        x2 = xd.reshape(-1, xd.shape[-1])
        t = x2 @ a.t()
        out = torch.addmm(base_out.reshape(-1, base_out.shape[-1]), t, b.t(), alpha=scale)
        ctx.save_for_backward(x2, t, a, b)
        ctx.scale = scale
        ctx.x_shape = xd.shape
        return out.view(base_out.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x2, t, a, b = ctx.saved_tensors
        need_base, need_x, need_a, need_b, _ = ctx.needs_input_grad
        g2 = grad.reshape(-1, grad.shape[-1])
        # beta=0: addmm's first argument only gives the shape; the scale rides in alpha
        dt = torch.addmm(t, g2, b, beta=0, alpha=ctx.scale) if (need_x or need_a) else None
        da = dt.t() @ x2 if need_a else None
        db = torch.addmm(b, g2.t(), t, beta=0, alpha=ctx.scale) if need_b else None
        dx = (dt @ a).view(ctx.x_shape) if need_x else None
        return (grad if need_base else None), dx, da, db, None


def plain_adapter(layer, kwargs) -> str | None:
    """The one active adapter when this call is the plain case the fused update computes; else None."""
    if layer.disable_adapters or layer.merged or kwargs.get("adapter_names") is not None:
        return None
    active = layer.active_adapters
    if len(active) != 1 or active[0] not in layer.lora_A:
        return None
    name = active[0]
    if name in getattr(layer, "lora_variant", {}) or layer.use_dora.get(name, False):
        return None
    if layer.lora_A[name].bias is not None or layer.lora_B[name].bias is not None:
        return None
    return name


def fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    name = plain_adapter(self, kwargs)
    a = self.lora_A[name].weight if name is not None else None
    b = self.lora_B[name].weight if name is not None else None
    if name is None or not (x.dtype == a.dtype == b.dtype):
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x, *args, **kwargs)
    if result.dtype != x.dtype:
        return type(self).forward(self, x, *args, **kwargs)
    return LoraUpdate.apply(result, self.lora_dropout[name](x), a, b, self.scaling[name])


def is_lora_linear(module: torch.nn.Module) -> bool:
    """peft's LoRA layer over a linear base (plain or bitsandbytes 4-bit)."""
    from peft.tuners.lora import LoraLayer
    base = getattr(module, "base_layer", None)
    return isinstance(module, LoraLayer) and hasattr(module, "lora_A") and hasattr(base, "in_features")


def check_one_dtype(lora_compute_dtype: str, model_dtype: torch.dtype) -> None:
    """config.fused_dtype_mismatch once the model's dtype is known (--compute-dtype auto)."""
    if why := fused_dtype_mismatch(lora_compute_dtype, str(model_dtype).removeprefix("torch.")):
        raise UserError(f"--fused-lora: {why}")


def fuse_lora_(model: torch.nn.Module, on: bool = True) -> int:
    """Give every LoRA linear layer the fused update (in place), or (on=False) peft's forward back, as
    the benchmarks do between cases on one model; the number of layers."""
    layers = [m for m in model.modules() if is_lora_linear(m)]
    for layer in layers:
        if on:
            layer.forward = types.MethodType(fused_forward, layer)
        else:
            vars(layer).pop("forward", None)
    if not on:
        unfuse_swiglu_(model)  # --fused-projections' MLPs: their own forward back too
    return len(layers)
