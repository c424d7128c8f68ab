"""python -m nli_qlora.tune: measure batch settings with the loop's own step and write the fastest
that fit a memory budget as a config file (how: nli_qlora.tools.tune).

    python -m nli_qlora.tune --model random:phi-2 --memory-budget 48GB --out tuned.yaml
    python -m nli_qlora.train --config tuned.yaml ..."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from nli_qlora.config import PRESETS, OneLineParser, add_config_flags, resolve
from nli_qlora.infra.errors import UserError
from nli_qlora.infra.machine import default_device
from nli_qlora.tools.memory import parse_budget
from nli_qlora.tools.tune import (PROG, candidates, device_name, encoded_rows, enforce_budget, fastest, prepare,
                                  print_table, settings_of, tune, write_outputs)

DEFAULT_BUDGET = "48GB"  # an A40
DEFAULT_BATCH_SIZES = (4, 8, 16, 32, 64, 128)


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Measure batch settings with the real training step and write "
                                                  "the fastest ones that fit a GPU memory budget as a config file.")
    parser.add_argument("--preset", choices=list(PRESETS), default=None, help="starting settings (default seed)")
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON settings over the preset")
    parser.add_argument("--memory-budget", default=DEFAULT_BUDGET, metavar="SIZE",
                        help="GPU memory the run may use, e.g. 48GB (an A40, the default) or 22GiB")
    parser.add_argument("--keep-effective-batch", action="store_true",
                        help="keep --batch-size (part of a recipe's result) and choose only grad_accum, "
                             "checkpointing and bucketing")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(DEFAULT_BATCH_SIZES), metavar="N",
                        help="candidate batch sizes when the effective batch may change")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per candidate")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--out", default="tuned.yaml", metavar="FILE", help="the config file to write (.yaml)")
    add_config_flags(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.exit_code


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args)
    budget, _ = parse_budget(args.memory_budget)
    out = Path(args.out)
    if out.suffix not in (".yaml", ".yml"):
        raise UserError(f"--out: {out} must end in .yaml (python -m nli_qlora.train --config reads YAML)")
    if out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK):  # before minutes of measuring
        why = "is a directory" if out.is_dir() else f"cannot be written ({out.parent} is not a writable folder)"
        raise UserError(f"--out: {out} {why}")
    if args.steps < 1:
        raise UserError(f"--steps: must be at least 1, got {args.steps}")
    if min(args.batch_sizes) < 1:
        raise UserError(f"--batch-sizes: must be at least 1, got {min(args.batch_sizes)}")
    if args.warmup < 0:
        raise UserError("--warmup: must be 0 or more")
    # both bases unless --dequantize-base or --no-dequantize-base is given: the 4-bit base first,
    # then the same candidates dequantized (one-way: tools.tune.tune); the model is loaded 4-bit
    bases = (cfg.dequantize_base,) if hasattr(args, "dequantize_base") else (False, True)
    cfg = dataclasses.replace(cfg, dequantize_base=min(bases))
    device = default_device()
    note = enforce_budget(budget, device)
    print(f"{PROG}: {note}", file=sys.stderr)
    rig = prepare(cfg, device)
    rows = encoded_rows(cfg, rig.tokenizer)
    if not rows:
        raise UserError("no training rows within --max-length to measure with")
    lengths = sorted(len(r.prompt_ids) for r in rows)
    print(f"{PROG}: {len(rows)} training rows, prompt tokens median {lengths[len(lengths) // 2]}, "
          f"longest {lengths[-1]}; device {device_name(device)}",
          file=sys.stderr)
    cands = candidates(cfg, args.batch_sizes, args.keep_effective_batch, bases)
    results = tune(rig, cfg, cands, rows, budget, args.steps, args.warmup,
                   log=lambda m: print(f"{PROG}: {m}", file=sys.stderr))
    best = fastest(results)
    print_table(results, best)
    if best is None:
        raise UserError(f"--memory-budget: no candidate fits in {args.memory_budget}; try "
                        f"--gradient-checkpointing or smaller --batch-sizes")
    context = [f"device: {device_name(device)}; {note}",
               f"measured {time.strftime('%Y-%m-%d %H:%M')} with {args.steps} timed steps after {args.warmup} "
               f"warm-up steps per candidate on {len(rows)} training rows",
               f"fastest that fits: {best.candidate.label()}: {best.samples_per_s:.1f} samples/s",
               "speed ranks are this device's; memory fit is the budget's"]
    if args.keep_effective_batch:
        context.append(f"effective batch kept at {cfg.batch_size}")
    elif best.candidate.batch_size != cfg.batch_size:
        context.append(f"the batch size changed from {cfg.batch_size}: learning rate and steps per epoch "
                       f"change with it (--keep-effective-batch keeps it)")
    try:
        md = write_outputs(out, settings_of(cfg, best), results, best, context)
    except OSError as err:  # the disk filled or the folder went away while measuring
        raise UserError(f"--out: cannot write {out}: {err.strerror or err}") from None
    print(f"{PROG}: wrote {out} and {md}", file=sys.stderr)
    print(out)
    return 0
