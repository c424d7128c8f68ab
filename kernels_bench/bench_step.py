"""One optimizer step of the real loop (nli_qlora.training.step.train_step), over batch size x sequence length x
gradient checkpointing x bucketing: how fast, how much memory, and why.

Each round is one step on the next batch: host-to-device copy, forward, backward, clipping, the
8-bit optimizer, ended by a device sync. Batches are fixed-length random tokens, or drawn from the
real SNLI validation prompts by the loop's sampler (bucketed or not) and collated by its collate."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

import pytest
import torch

from kernels_bench import sizes
from kernels_bench.conftest import round_times
from kernels_bench.hardware import A40, lookup, roofline_seconds, utilization
from nli_qlora.model.compile_layers import uncompiled
from nli_qlora.model.fused_lora import fuse_lora_
from nli_qlora.model.fused_norm import fuse_norms_
from nli_qlora.model.fused_projections import fuse_projections_
from nli_qlora.model.fused_rope import fuse_rope_
from nli_qlora.tools.tune import draw_batches, fixed_rows, release, set_checkpointing, step_counts, with_warmup
from nli_qlora.training.optim import trainer_for
from nli_qlora.training.step import timed_step


@dataclass(frozen=True)
class Shape:
    """What the cost model needs to know about a model."""
    layers: int
    hidden: int
    quantized: int  # weights of the 4-bit linear layers (every token passes through them)
    head: int  # output projection weights (run at the answer position only, for the label loss)
    trainable: int  # LoRA parameters
    total: int  # true parameter count


def model_shape(rig) -> Shape:
    base = rig.model.get_base_model()
    quantized = 2 * (rig.counts["total"] - rig.counts["total_packed"])  # packed counts 4-bit weights as halves
    return Shape(base.config.num_hidden_layers, base.config.hidden_size, quantized,
                 base.get_output_embeddings().weight.numel(), rig.counts["trainable"], rig.counts["total"])


def step_cost(s: Shape, rows: int, width: int, checkpointing: bool, dequantized: bool = False) -> tuple[float, float]:
    """(FLOPs, bytes moved) of one step on `rows` x `width` tokens, padding included (the GPU computes it).

    FLOPs: matmuls 2 per weight per token forward; backward computes input gradients through the
    frozen base (1x) and LoRA and attention gradients (2x); checkpointing runs the decoder forward
    again. Bytes: the 4-bit weights read and dequantized to bf16 (written, read again) in every pass
    (forward, backward, recompute), or with the base kept dequantized, its bf16 weights read in each
    pass; the bf16 head read twice; activations, 34 x hidden bf16 bytes
    per token and layer, written and read once; about 20 bytes per adapter parameter for gradients
    and the 8-bit AdamW update."""
    tokens = rows * width
    body = 2 * s.quantized * tokens
    lora = 2 * s.trainable * tokens
    attention = 4 * rows * width * width * s.hidden * s.layers
    head = 2 * s.head * rows
    flops = (body + lora + attention + head) + (body + 2 * lora + 2 * attention + head)
    if checkpointing:
        flops += body + lora + attention
    passes = 3 if checkpointing else 2
    weights = passes * s.quantized * (2 if dequantized else 0.5 + 1 / 64 + 4) + 2 * 2 * s.head
    activations = 2 * 34 * s.hidden * tokens * s.layers
    if checkpointing:
        activations += 2 * 2 * s.hidden * tokens * s.layers  # the saved layer inputs
    return flops, weights + activations + 20 * s.trainable


@pytest.mark.parametrize("case", sizes.STEP_CASES, ids=str)
@pytest.mark.parametrize("model_name", sizes.STEP_MODELS, ids=sizes.model_id)
def bench_step(benchmark, model_name, case, rig_for, snli_rows_for, case_memory, device, device_name):
    rig = rig_for(model_name, case.dequantize_base)
    if case.seq == sizes.SNLI:
        rows = snli_rows_for(rig)
    else:
        rows = fixed_rows(case.seq, case.batch * sizes.STEP_ROUNDS, rig.model.config.vocab_size, seed=rig.cfg.seed)
    cfg = dataclasses.replace(rig.cfg, batch_size=case.batch, grad_accum=1, gradient_checkpointing=case.checkpointing,
                              bucketing=case.bucketing, step_mode=case.step_mode,
                              lora_compute_dtype=case.lora_compute_dtype, fused_lora=case.fused_lora,
                              fused_projections=case.fused_projections, fused_norm=case.fused_norm,
                              fused_rope=case.fused_rope, compile=case.compile, attention_kernel=case.attention_kernel)
    measured = draw_batches(rows, case.batch, 1, case.bucketing, sizes.STEP_ROUNDS, rig.tokenizer.pad_token_id,
                            cfg.pad_to_multiple, cfg.seed, pin=device.type == "cuda",
                            answer=rig.appended_answers(cfg.loss))
    plan = with_warmup(measured, sizes.STEP_WARMUP)  # plus one step per shape: CUDA graphs captured before timing
    queue, used, own, captured = iter(plan), [], [], []

    def setup():
        micro = next(queue)
        used.append(micro)
        return (micro,), {}

    trainer, oom = None, False
    try:
        set_checkpointing(rig.model, case.checkpointing)
        fuse_lora_(rig.model, case.fused_lora)  # on or off for every adapted layer: a case before may have grouped
        if case.fused_projections:
            fuse_projections_(rig.model)
        fuse_norms_(rig.model, case.fused_norm)  # on or off: the rig is shared with the cases before
        fuse_rope_(rig.model, case.fused_rope)
        trainer, _ = trainer_for(cfg, rig.model, rig.label_ids, total_steps=1000)
        case_memory.reset()

        def one_step(micro):
            stats, seconds = timed_step(trainer, micro, device)  # synchronized at both ends, as the loop times
            own.append(seconds)
            captured.append(bool(stats.get("captured")))

        # the rig's layers stay compiled once a case compiled them: the other cases run them uncompiled
        with uncompiled(unless=case.compile):
            benchmark.pedantic(one_step, setup=setup, rounds=len(measured), warmup_rounds=len(plan) - len(measured))
    except torch.OutOfMemoryError:
        oom = True
    except RuntimeError as err:  # an allocation failing inside a CUDA graph capture
        if "out of memory" not in str(err):
            raise
        oom = True
    peak, start = case_memory.peak_gb(), case_memory.start_gb()
    mode = "eager" if trainer is None or trainer.flat is None else (
        "flat + CUDA graphs" if trainer.graphed is not None else "flat")
    capture_s = trainer.graphed.capture_s if trainer is not None and trainer.graphed is not None else 0.0
    trainer = None
    release(rig)
    if oom:
        case_memory.out_of_memory(f"bench_step[{sizes.model_id(model_name)}-{case}]", peak_gb=peak)

    times = round_times(benchmark, own)
    measured = used[-len(times):]
    counts = [step_counts(m) for m in measured]
    samples, real, padded = (sum(c[k] for c in counts) for k in range(3))
    total = sum(times)
    shape = model_shape(rig)
    costs = [step_cost(shape, m[0]["input_ids"].shape[0], m[0]["input_ids"].shape[1], case.checkpointing,
                       case.dequantize_base) for m in measured]
    a40 = [roofline_seconds(f, b, A40) for f, b in costs]
    here = lookup(device_name)
    mean_flops, mean_bytes = (sum(c[k] for c in costs) / len(costs) for k in range(2))
    util = utilization(4 * shape.total * real, total, device_name if device.type == "cuda" else None)
    benchmark.extra_info.update({
        "kind": "step", "model": model_name, "batch": case.batch, "seq": case.seq,
        "checkpointing": case.checkpointing, "bucketing": case.bucketing, "step_mode": case.step_mode,
        "dequantize_base": case.dequantize_base, "lora_compute_dtype": case.lora_compute_dtype,
        "fused_lora": case.fused_lora, "fused_projections": case.fused_projections, "fused_norm": case.fused_norm,
        "fused_rope": case.fused_rope,
        "compile": case.compile, "attention_kernel": case.attention_kernel,
        "step_path": mode, "graph_capture_s": round(capture_s, 3), "captured_while_timed": sum(captured[-len(times):]),
        "device": device_name, "rounds": len(times), "median_step_ms": round(1e3 * statistics.median(times), 3),
        "mean_step_ms": round(1e3 * total / len(times), 3),
        "samples_per_s": round(samples / total, 3), "real_tokens_per_s": round(real / total, 1),
        "padding_fraction": round(1 - real / padded, 4), "peak_gpu_gb": peak, "start_gpu_gb": start,
        "params_total": shape.total, "params_trainable": shape.trainable,
        "flops_utilization": None if util is None else round(util, 5),
        "a40_estimate_ms": round(1e3 * sum(a40) / len(a40), 3),
        "a40_bound": "compute" if mean_flops / A40.bf16_flops >= mean_bytes / A40.bandwidth else "memory",
        "roofline_here_ms": (round(1e3 * roofline_seconds(mean_flops, mean_bytes, here), 3)
                             if here and here.bandwidth and device.type == "cuda" else None),
    })
