"""--fused-norm: each RMSNorm of a Llama-style decoder as torch's one rms_norm call.

transformers writes RMSNorm as a float32 copy, pow, mean, add, rsqrt, two multiplies and a cast
back, twice a layer and once at the end (61 times a step in SmolLM2). On CUDA
`torch.nn.functional.rms_norm` is a fused kernel forward and backward (one norm forward and backward
on an H200: 3 kernels against 23, docs/benchmarks.md, thirteenth round), and its backward keeps the input
and the float32 rsqrt instead of a float32 copy of the input.
At batch 8 a step is bound by the number of small kernels (docs/benchmarks.md, issue 14), so this
is the same arithmetic in fewer launches. On a CPU the call decomposes into the same operations:
no faster, no harm.

Rounding: transformers rounds the normalized value to the compute dtype and then multiplies by the
weight; the fused kernel multiplies in float32 and rounds once. So runs with and without it train
alike, not bit for bit (as --fused-lora), and a resume keeps the run's setting.

Only modules that compute that formula are replaced. Each class is checked once, in float32 on a
small input, against the fused call: Gemma's norm (1 + weight) or any other variant fails the check
and keeps its own forward. LayerNorm (Phi) is one kernel already and is left alone."""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def _eps(module: torch.nn.Module) -> float | None:
    for name in ("variance_epsilon", "eps"):
        value = getattr(module, name, None)
        if isinstance(value, float):
            return value
    return None


def _candidate(module: torch.nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return (type(module).__name__.endswith("RMSNorm") and isinstance(weight, torch.Tensor) and weight.dim() == 1
            and _eps(module) is not None)


def _fused_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    if hidden_states.dtype != self.weight.dtype:  # transformers' formula returns the weight's dtype here
        return type(self).forward(self, hidden_states)
    return F.rms_norm(hidden_states, self.weight.shape, self.weight, self.fused_norm_eps)


@torch.no_grad()
def computes_rms_norm(module: torch.nn.Module) -> bool:
    """Whether the module's own forward is weight * x / sqrt(mean(x^2) + eps), on a float32 probe."""
    weight = module.weight
    probe = torch.randn(2, weight.shape[0], generator=torch.Generator().manual_seed(0)).to(weight.device)
    saved = weight.data
    try:
        module.weight.data = torch.rand(weight.shape, generator=torch.Generator().manual_seed(1)).to(
            device=weight.device) + 0.5  # a weight of no special value: ones would hide a (1 + weight)
        own = type(module).forward(module, probe).float()
        fused = F.rms_norm(probe, weight.shape, module.weight.data, _eps(module))
    except Exception:  # a forward that takes other arguments is not the plain norm
        return False
    finally:
        module.weight.data = saved
    return own.shape == fused.shape and torch.allclose(own, fused, rtol=1e-5, atol=1e-6)


def fuse_norms_(model: torch.nn.Module, on: bool = True) -> int:
    """Replace, in place, the forward of every RMSNorm that computes the plain formula; the count.
    `on=False` puts transformers' forward back (the benchmarks reuse one model across cases)."""
    checked: dict[type, bool] = {}
    count = 0
    for module in model.modules():
        if not _candidate(module):
            continue
        if not on:
            if "fused_norm_eps" in vars(module):
                del module.forward, module.fused_norm_eps
            continue
        cls = type(module)
        if cls not in checked:
            checked[cls] = computes_rms_norm(module)
        if checked[cls]:
            module.fused_norm_eps = _eps(module)
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count


def fused_norm_count(model: torch.nn.Module) -> int:
    """How many norms fuse_norms_ replaced (what run_start records: 0 without --fused-norm, or on Phi)."""
    return sum(1 for m in model.modules() if hasattr(m, "fused_norm_eps"))
