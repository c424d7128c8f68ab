"""Hold nli_qlora.tools.memory's peak estimate against torch's measured peak on a CUDA machine.

    python scripts/check_memory_estimate.py --out memory_check.json

Builds `random:phi-2` (the real Phi-2 shapes, seeded random weights, NF4 like from_pretrained) with
the loop's own pieces (model.py, optim.py, scoring.LabelScorer, step.train_step), then for each
batch size and gradient checkpointing off/on runs a few optimizer steps on a synthetic batch of
fixed length, reading torch.cuda.max_memory_allocated (reset before each case). Prints estimate vs
measured with the error in percent and writes the same rows as JSON. About two minutes on an H100;
without CUDA it stops with one line."""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from pathlib import Path

PROG = "scripts/check_memory_estimate.py"
GIB = 2**30


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file for the rows")
    parser.add_argument("--model", default="random:phi-2", help="model source (default random:phi-2)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--seq-len", type=int, default=64, help="tokens per row (padded to a multiple of 8)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per case")
    parser.add_argument("--checkpointing", choices=("both", "on", "off"), default="both")
    parser.add_argument("--loss", choices=("label", "answer", "lm"), default="label")
    parser.add_argument("--quantization", choices=("nf4", "fp4", "none"), default="nf4",
                        help="base weights (none = a bf16 base, for reference)")
    parser.add_argument("--dequantize-base", action="store_true", help="the 4-bit base kept dequantized")
    parser.add_argument("--lora-compute-dtype", default="float32", choices=("float32", "bfloat16"),
                        help="the adapters' compute dtype (bfloat16: working copies of float32 masters)")
    parser.add_argument("--compile", action="store_true", help="the decoder layers compiled (--compile)")
    parser.add_argument("--step-mode", choices=("eager", "fast"), default=None,
                        help="the step's mode (default: RunConfig's, as the loop runs)")
    return parser


def synthetic_rows(batch_size: int, seq_len: int, vocab: int, seed: int = 0):
    """Rows of exactly seq_len prompt tokens (no padding), labels cycling over the three classes."""
    from nli_qlora.data.batches import Encoded
    rng = random.Random(seed)
    return [Encoded(tuple(rng.randrange(3, vocab) for _ in range(seq_len)), i % 3, i) for i in range(batch_size)]


def compare_row(estimate: dict, measured_allocated: int, measured_reserved: int, **case) -> dict:
    """One result row: the case, the estimate's terms, what torch measured, and the error in percent
    of the allocated estimate against max_memory_allocated (the figure the estimate is tuned to)."""
    error = 100.0 * (estimate["allocated"] - measured_allocated) / measured_allocated
    return {**case, "estimate": estimate, "estimate_allocated_gib": round(estimate["allocated"] / GIB, 3),
            "estimate_total_gib": round(estimate["total"] / GIB, 3),
            "measured_allocated_gib": round(measured_allocated / GIB, 3),
            "measured_reserved_gib": round(measured_reserved / GIB, 3), "error_percent": round(error, 1)}


def render(rows: list[dict]) -> str:
    """A plain-text table of the rows (what the script prints)."""
    head = f"{'batch':>5} {'seq':>4} {'ckpt':>4} {'mode':>5} {'estimate GiB':>12} {'measured GiB':>12} {'error %':>8} {'reserved GiB':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['batch_size']:>5} {r['seq_len']:>4} {'on' if r['checkpointing'] else 'off':>4} {r.get('step_mode', '-'):>5} "
                     f"{r['estimate_allocated_gib']:>12.3f} {r['measured_allocated_gib']:>12.3f} "
                     f"{r['error_percent']:>8.1f} {r['measured_reserved_gib']:>12.3f}")
    return "\n".join(lines)


def make_trainer(model, cfg):
    """The loop's trainer for cfg (flat buffers and CUDA graphs in step_mode fast), on fresh parameters:
    trainer_for, as the loop and the tuner build it, after the tuner's checkpointing switch."""
    from nli_qlora.tools.tune import set_checkpointing
    from nli_qlora.training.optim import trainer_for

    set_checkpointing(model, cfg.gradient_checkpointing)
    model.train()
    return trainer_for(cfg, model, [1, 2, 3], total_steps=1000)[0]


def run_case(trainer, model_config, cfg, batch_size: int, seq_len: int, steps: int, device) -> dict:
    """`steps` optimizer steps on one synthetic batch; the peak covers them all (a first step of a
    new shape in step_mode fast includes its CUDA-graph capture, as in the loop)."""
    import torch

    from nli_qlora.data.batches import collate
    from nli_qlora.tools.memory import estimate_peak_bytes
    from nli_qlora.training.step import to_device, train_step

    rows = synthetic_rows(batch_size, seq_len, model_config.vocab_size)
    answer = [[1], [2], [3]] if cfg.loss == "lm" else None
    batch = to_device(collate(rows, 0, pad_multiple(cfg), answer), device)
    width = int(batch["input_ids"].shape[1])
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        train_step(trainer, [batch])
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    estimate = estimate_peak_bytes(model_config, cfg, batch_size, width)
    return compare_row(estimate, torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved(),
                       batch_size=batch_size, seq_len=width, checkpointing=cfg.gradient_checkpointing,
                       loss=cfg.loss, step_mode=cfg.step_mode, steps=steps, step_s=round(elapsed / steps, 4))


def pad_multiple(cfg) -> int:
    return getattr(cfg, "pad_to_multiple", 8)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.compile and args.checkpointing == "on":
        print(f"{PROG}: error: --compile: not with --checkpointing on (the loop refuses the two together)", file=sys.stderr)
        return 2
    import torch
    if not torch.cuda.is_available():
        print(f"{PROG}: error: needs a CUDA GPU (torch {torch.__version__} sees none); the estimate alone: "
              f"python -m nli_qlora.train --dry-run", file=sys.stderr)
        return 2

    from nli_qlora.config import RunConfig
    from nli_qlora.model.dequantize import dequantize_base_
    from nli_qlora.model.load import attach_lora, compute_dtype, load_base_model, load_config, match_targets, resolve_source

    device = torch.device("cuda")
    torch.cuda.init()
    free, total = torch.cuda.mem_get_info()
    context = total - free - torch.cuda.memory_reserved()
    overrides = {"step_mode": args.step_mode} if args.step_mode else {}
    cfg = RunConfig(model=args.model, loss=args.loss, quantization=args.quantization,
                    dequantize_base=args.dequantize_base, lora_compute_dtype=args.lora_compute_dtype,
                    compile=args.compile, **overrides)
    source = resolve_source(cfg)
    model_config = load_config(source)
    print(f"{args.model} on {torch.cuda.get_device_name()}; CUDA context {context / GIB:.2f} GiB; "
          f"step_mode {cfg.step_mode}", flush=True)
    modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.checkpointing]
    if args.compile:
        modes = tuple(m for m in modes if not m)  # --compile is not combined with checkpointing
    rows = []
    for ckpt in modes:  # a fresh model and trainer per mode, as a run has: nothing left from the last
        cfg.gradient_checkpointing = ckpt
        model = load_base_model(cfg, source, device, compute_dtype(cfg, device))
        model = attach_lora(model, cfg, match_targets(model, cfg.target_modules)[0])
        if cfg.dequantize_base:
            dequantize_base_(model)
        trainer = make_trainer(model, cfg)
        for bs in args.batch_sizes:
            rows.append(run_case(trainer, model_config, cfg, bs, args.seq_len, args.steps, device))
            print(render(rows[-1:]).splitlines()[-1], flush=True)
        del model, trainer
        gc.collect()
        torch.cuda.empty_cache()
    print(render(rows))
    import bitsandbytes
    import peft
    import transformers
    result = {"device": torch.cuda.get_device_name(), "cuda_context_gib": round(context / GIB, 3),
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__},
              "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "model": args.model, "quantization": args.quantization,
              "dequantize_base": args.dequantize_base, "lora_compute_dtype": args.lora_compute_dtype, "compile": args.compile,
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    worst = max(abs(r["error_percent"]) for r in rows)
    print(f"worst error {worst:.1f}% (target: within 15%); rows in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
