"""The baseline beside every table: the same step work done the usual way, through
transformers.Trainer + PEFT + bitsandbytes (scripts/peer_trainer.py: NF4 double-quant, LoRA
r=32/alpha=64/dropout=0.05 on the published targets, paged_adamw_8bit, non-reentrant gradient
checkpointing, bf16, batch 8, loss on the answer tokens only), in the same run on the same device.

Trainer.train() runs PEER_WARMUP + PEER_STEPS optimizer steps on SNLI validation prompts; a
TrainerCallback times each step between on_step_begin and on_step_end, synchronized at both ends,
and the warm-up steps are left out of extra_info. pytest-benchmark's own figure for these cases is
the whole train() call (one round: Trainer set-up and warm-up included); read extra_info."""

from __future__ import annotations

import dataclasses
import importlib.util
import statistics
import sys

import pytest
import torch

from kernels_bench import sizes
from kernels_bench.conftest import REPO, build_or_skip, config_for
from kernels_bench.hardware import utilization


def peer_module():
    """scripts/peer_trainer.py, which lives outside the package on purpose (loaded once)."""
    if "peer_trainer" not in sys.modules:
        spec = importlib.util.spec_from_file_location("peer_trainer", REPO / "scripts" / "peer_trainer.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["peer_trainer"] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["peer_trainer"]


@pytest.mark.parametrize("model_name", sizes.PEER_MODELS, ids=sizes.model_id)
def bench_peer(benchmark, model_name, model_cache, snli_rows_for, case_memory, device, device_name, tmp_path):
    peer_trainer = peer_module()
    cfg = dataclasses.replace(config_for(model_name), batch_size=sizes.PEER_BATCH, grad_accum=1,
                              gradient_checkpointing=True, bucketing=False, step_mode="eager", loss="answer")
    peer = model_cache.get(("peer", model_name),
                           lambda: build_or_skip(model_name, lambda: peer_trainer.load_peer(cfg, device)))
    rows = snli_rows_for(peer)
    steps = sizes.PEER_WARMUP + sizes.PEER_STEPS
    timer = peer_trainer.step_timer_callback(device)
    trainer, collator = peer_trainer.make_trainer(peer, cfg, rows, tmp_path / "trainer", max_steps=steps,
                                                  callbacks=[timer])
    oom = False
    case_memory.reset()
    try:
        benchmark.pedantic(trainer.train, rounds=1, iterations=1)
    except torch.OutOfMemoryError:
        oom = True
    peak = case_memory.peak_gb()
    del trainer
    if oom:
        case_memory.out_of_memory(f"bench_peer[{sizes.model_id(model_name)}]", peak_gb=peak)

    warm = min(sizes.PEER_WARMUP, len(timer.times) - 1)  # --benchmark-disable still runs every step
    times = timer.times[warm:]
    counts = list(collator.counts)[warm:warm + len(times)]
    samples, real, padded = (sum(c[k] for c in counts) for k in range(3))
    total = sum(times)
    params = peer.counts["total"]
    util = utilization(4 * params * real, total, device_name if device.type == "cuda" else None)
    benchmark.extra_info.update({
        "kind": "peer", "model": model_name, "batch": cfg.batch_size, "seq": sizes.SNLI, "checkpointing": True,
        "bucketing": False, "step_mode": "transformers.Trainer", "step_path": "transformers.Trainer",
        "device": device_name, "rounds": len(times), "median_step_ms": round(1e3 * statistics.median(times), 3),
        "mean_step_ms": round(1e3 * total / len(times), 3), "samples_per_s": round(samples / total, 3),
        "real_tokens_per_s": round(real / total, 1), "padding_fraction": round(1 - real / padded, 4),
        "peak_gpu_gb": peak, "params_total": params, "params_trainable": peer.counts["trainable"],
        "flops_utilization": None if util is None else round(util, 5), "a40_estimate_ms": None,
    })
