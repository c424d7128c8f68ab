"""The frozen 4-bit base kept dequantized (`--dequantize-base`): the same weights, fewer kernels.

A bitsandbytes 4-bit layer dequantizes its weight to the compute dtype on every use: once in the
forward pass and again in the backward pass, two or three small kernels each time (issue 14's
profile: 758 dequantization calls and 7 ms of a 42 ms Phi-2 step). The base never trains, so its
dequantized weight is the same tensor every time. This module computes it once and puts a plain
`nn.Linear` holding exactly those values in place of each 4-bit layer. The model computes the same
function as QLoRA (the 4-bit weights' values, not the original ones), with no dequantization in
any pass. The price is memory: 2 bytes a base weight in bfloat16 instead of about 0.53.

The swap is done after the LoRA adapters are attached (or loaded), so adapters initialise and
save exactly as on the 4-bit base: only each adapter layer's `base_layer` changes."""

from __future__ import annotations

import torch


def is_4bit(module: torch.nn.Module) -> bool:
    """bitsandbytes' 4-bit linear layer itself (peft's adapter layer around it bears the same name)."""
    return type(module).__module__.startswith("bitsandbytes.") and type(module).__name__ == "Linear4bit"


def dequantized_linear(layer: torch.nn.Module) -> torch.nn.Linear:
    """A frozen nn.Linear computing what the 4-bit `layer` computes: its weight as bitsandbytes
    dequantizes it for a matmul (in the layer's compute dtype), its bias in that dtype too."""
    import bitsandbytes.functional as bnbf

    weight = layer.weight
    if getattr(weight.quant_state, "packing_format_for_cpu", False):  # other byte order: values would be wrong
        raise RuntimeError("a 4-bit layer was repacked for CPU inference before its base was dequantized")
    dtype = layer.compute_dtype or weight.quant_state.dtype
    with torch.no_grad():
        values = bnbf.dequantize_4bit(weight.data, weight.quant_state).to(dtype)
    out_features, in_features = values.shape
    linear = torch.nn.Linear(in_features, out_features, bias=layer.bias is not None, device="meta")
    linear.weight = torch.nn.Parameter(values, requires_grad=False)
    if layer.bias is not None:
        linear.bias = torch.nn.Parameter(layer.bias.data.to(dtype), requires_grad=False)
    linear.train(layer.training)
    return linear


def dequantize_base_(model: torch.nn.Module) -> int:
    """Replace every 4-bit layer of `model` by its dequantized nn.Linear, in place; the number replaced.
    Each 4-bit weight is freed as its copy is made, so the peak is one layer over the final size."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_4bit(child):
                setattr(parent, name, dequantized_linear(child))
                count += 1
    return count
