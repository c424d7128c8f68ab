"""Where the time goes, before any speed work (issue 14): start-up phase by phase, then a
torch.profiler breakdown of training steps of the real loop (nli_qlora.training.step via
tools.tune.prepare and training.optim.trainer_for, as the loop and the benchmarks build them).

    python scripts/profile_step.py --model random:phi-2 --tokenizer DIR --batch 8 --seq 64
    python scripts/profile_step.py --preset tiny --batch 8 --seq 16          # on a CPU

Prints one JSON object: the start-up phases (seconds), the median step, GPU kernels per step and
their summed time (what the GPU did), the host gap (step time the GPU was idle), the top
operators by device time, and (--step-mode eager) the operators that launch the most kernels.
Random token rows of one length: timings do not depend on values."""

from __future__ import annotations

import time

PROCESS_T0 = time.perf_counter()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

if __package__ in (None, ""):  # run as a script: the package lives beside scripts/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="seed")
    p.add_argument("--model")
    p.add_argument("--tokenizer")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="profiled steps (after warm-up)")
    p.add_argument("--step-mode", default="fast", choices=("fast", "eager"))
    p.add_argument("--dequantize-base", action="store_true", help="the 4-bit base kept dequantized")
    p.add_argument("--lora-compute-dtype", default="float32", choices=("float32", "bfloat16"),
                   help="the adapters' compute dtype (bfloat16: working copies of float32 masters)")
    p.add_argument("--fused-lora", action="store_true", help="the LoRA update in two matmuls")
    p.add_argument("--fused-projections", action="store_true", help="shared-input linears grouped (with the two above)")
    p.add_argument("--fused-norm", action="store_true", help="each RMSNorm as torch's rms_norm (3 kernels forward and backward on CUDA, not 23)")
    p.add_argument("--fused-rope", action="store_true", help="the rotary embedding as Liger-Kernel's Triton kernel")
    p.add_argument("--compile", action="store_true", help="the decoder layers compiled (RunConfig.compile): the "
                   "first step's warm-up compiles, its capture records the compiled kernels")
    p.add_argument("--attention-kernel", default="flash", choices=("flash", "auto"), help="RunConfig.attention_kernel")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()

    phases: dict[str, float] = {}
    t = time.perf_counter()
    import nli_qlora  # noqa: F401  (first: bitsandbytes then imports as the commands import it)
    import bitsandbytes  # noqa: F401
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    from torch.profiler import ProfilerActivity, profile

    from nli_qlora.config import preset
    from nli_qlora.tools.tune import draw_batches, fixed_rows, prepare, with_warmup
    from nli_qlora.training.optim import trainer_for
    from nli_qlora.training.step import synchronize, timed_step
    phases["imports"] = time.perf_counter() - t

    cuda = torch.cuda.is_available()
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    t = time.perf_counter()
    if cuda:
        torch.zeros(1, device=device)
    phases["cuda_init"] = time.perf_counter() - t

    changes = {k: v for k, v in (("model", args.model), ("tokenizer", args.tokenizer)) if v}
    cfg = dataclasses.replace(preset(args.preset), **changes, batch_size=args.batch, step_mode=args.step_mode,
                              dequantize_base=args.dequantize_base, lora_compute_dtype=args.lora_compute_dtype,
                              fused_lora=args.fused_lora, fused_projections=args.fused_projections, fused_norm=args.fused_norm,
                              fused_rope=args.fused_rope, compile=args.compile,
                              attention_kernel=args.attention_kernel)
    t = time.perf_counter()
    bundle = prepare(cfg, device)
    synchronize(device)
    phases["load: tokenizer, 4-bit base, LoRA"] = time.perf_counter() - t

    rows = fixed_rows(args.seq, args.batch * (args.steps + 4), bundle.model.config.vocab_size, seed=cfg.seed)
    plan = with_warmup(draw_batches(rows, args.batch, 1, False, args.steps + 3, bundle.tokenizer.pad_token_id,
                                    cfg.pad_to_multiple, cfg.seed, pin=cuda), 0)
    trainer, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=1000)
    t = time.perf_counter()
    timed_step(trainer, plan[0], device)
    phases["first step (compile, CUDA graph capture on a GPU)" if args.compile else "first step (CUDA graph capture on a GPU)"] = time.perf_counter() - t
    for micro in plan[1:3]:
        timed_step(trainer, micro, device)
    phases["process start to steady state"] = time.perf_counter() - PROCESS_T0

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    seconds = []
    with profile(activities=activities) as prof:
        for micro in plan[3:3 + args.steps]:
            seconds.append(timed_step(trainer, micro, device)[1])
    n = len(seconds)
    averages = prof.key_averages()

    def device_us(e) -> float:
        return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)) or 0.0)

    kernels = [e for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA")]
    busy_ms = sum(e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
                  for e in kernels) / 1e3 / n if kernels else None
    step_ms = statistics.median(seconds) * 1e3
    top = sorted(averages, key=device_us if cuda else (lambda e: e.self_cpu_time_total), reverse=True)[:args.top]
    # the operators that launch the most kernels (a backward op under the autograd node that ran it,
    # a forward op under the outermost aten op): what a fused kernel would remove. --step-mode eager
    # only: a captured step's replay launches its kernels with no operator around them
    launches: dict[str, int] = {}
    for e in prof.events() if cuda and args.step_mode == "eager" else ():
        if not getattr(e, "kernels", None):
            continue
        label, p = e.name, e
        while p is not None:
            if p.name.startswith("autograd::engine::evaluate_function"):
                label = p.name.split(": ", 1)[-1]
                break
            if p.name.startswith("aten::"):
                label = p.name
            p = p.cpu_parent
        launches[label] = launches.get(label, 0) + len(e.kernels)
    print(json.dumps({
        "model": cfg.model, "batch": args.batch, "seq": args.seq, "step_mode": args.step_mode,
        "dequantize_base": args.dequantize_base, "lora_compute_dtype": args.lora_compute_dtype, "fused_lora": args.fused_lora,
        "fused_projections": args.fused_projections, "fused_norm": args.fused_norm, "fused_rope": args.fused_rope,
        "compile": args.compile, "attention_kernel": args.attention_kernel, "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "startup_s": {k: round(v, 3) for k, v in phases.items()},
        "median_step_ms": round(step_ms, 3),
        "gpu_kernels_per_step": round(len(kernels) / n, 1) if cuda else None,
        "gpu_busy_ms_per_step": round(busy_ms, 3) if busy_ms is not None else None,
        "host_gap_ms_per_step": round(step_ms - busy_ms, 3) if busy_ms is not None else None,
        "top_ops": [{"name": e.key[:60], "calls_per_step": round(e.count / n, 1),
                     "device_ms_per_step": round(device_us(e) / 1e3 / n, 3),
                     "cpu_ms_per_step": round(e.self_cpu_time_total / 1e3 / n, 3)} for e in top],
        "kernels_by_launching_op": {k: round(v / n, 1) for k, v in
                                    sorted(launches.items(), key=lambda kv: -kv[1])[:args.top]} or None,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
