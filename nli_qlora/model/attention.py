"""Plain causal SDPA (no mask tensor, the flash kernel) in the CUDA-graph capture too.

The scorer passes no attention mask: rows are right-padded and never packed, so the causal mask
alone gives every position a loss or score reads (training.scoring). In an eager pass transformers
sees that (it reads the position ids: one sequence a row) and runs SDPA with `is_causal=True`.
While a CUDA graph is being captured it cannot read them, so it builds a packed-sequence mask,
[B, 1, T, T], and SDPA runs its masked kernel: the captured step (the fast one) spent kernels on
building a mask that is the causal one, and attention ran slower than in the eager step. A layer
compiled with torch.compile also met a mask in the capture that its eager warm-up had not, and
recompiled inside the capture, which fails.

So models load with transformers' own SDPA attention under a name of its own, registered through
transformers' public AttentionInterface and AttentionMaskInterface. Its mask function returns no
mask where no padding mask is given and queries and keys are the same positions: what the scorer
passes, and what transformers decides itself outside a capture for rows that are not packed. It
never builds a packed-sequence mask from position ids, so packed rows must not be given to a model
loaded here (nothing in nli_qlora packs). Everywhere else it builds exactly the mask "sdpa" builds:
generation with a padding mask, a cache, sliding windows."""

from __future__ import annotations

import contextlib
import functools

NAME = "nli_causal_sdpa"


def causal_sdpa_mask(*args, **kwargs):
    """transformers' sdpa_mask, except None for an unpadded, uncached, full-window batch."""
    from transformers.masking_utils import sdpa_mask
    q_length = kwargs.get("q_length")
    if q_length is None and kwargs.get("cache_position") is not None:  # transformers' older signature
        q_length = kwargs["cache_position"].shape[0]
    if (kwargs.get("attention_mask") is None and kwargs.get("local_size") is None
            and all(isinstance(kwargs.get(k, 0), int) and kwargs.get(k, 0) == 0 for k in ("q_offset", "kv_offset"))
            and q_length is not None and q_length == kwargs.get("kv_length")):
        return None
    return sdpa_mask(*args, **kwargs)


def use_causal_sdpa_(model) -> None:
    """Switch a model loaded with attn_implementation="sdpa" to NAME: the same attention function."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface
    AttentionInterface.register(NAME, sdpa_attention_forward)
    AttentionMaskInterface.register(NAME, causal_sdpa_mask)
    model.set_attn_implementation(NAME)


ATTENTION_KERNELS = ("flash", "auto")


def kernel_choice(choice: str, device):
    """A context factory under which SDPA picks the run's attention kernel (RunConfig.attention_kernel).

    flash: cuDNN's kernel turned off, so SDPA runs FlashAttention-2 (torch's own), or where it cannot,
    the memory-efficient kernel, then the math one. On Hopper torch tries cuDNN's first, and cuDNN
    builds an execution plan for every sequence length it meets: on an H200 each new length cost about
    0.1 s more than with flash, in every captured step shape and every new evaluation width, while its
    steps were as fast for SmolLM2 and 1-3% faster for Phi-2's heads of 80 (docs/benchmarks.md, issue 14,
    sixteenth round). An A40 (sm_86) runs flash already. Only the enabled kernels change, never torch's
    priority order: torch sets its Hopper order at the first SDPA call of a process, and a context that
    restored the order it found before that call would undo it for everything after (auto, the peer).
    auto: torch's own choice. CPU runs are left as they are: the choice is about CUDA kernels."""
    import torch
    if choice not in ATTENTION_KERNELS:
        raise ValueError(f"unknown attention kernel {choice!r}")
    if choice == "auto" or torch.device(device).type != "cuda":
        return contextlib.nullcontext
    from torch.nn.attention import SDPBackend, sdpa_kernel
    allowed = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    return functools.partial(sdpa_kernel, allowed)
