"""python -m nli_qlora.tune: measure batch settings and write the fastest ones that fit a memory budget.

Every candidate (batch size, gradient accumulation, gradient checkpointing, bucketing) runs the loop's
own step, `nli_qlora.step.train_step`, on batches drawn from the configured training data's real length
distribution: there is no second step. On a GPU the budget is enforced through the allocator's
per-process memory fraction, so a candidate too big for the target card (an A40's 48 GB by default)
raises `torch.OutOfMemoryError` here too and is recorded as "does not fit". On CPU nothing is enforced.

    python -m nli_qlora.tune --model random:phi-2 --memory-budget 48GB --out tuned.yaml
    python -m nli_qlora.train --config tuned.yaml ...

The YAML holds RunConfig field names; the measured table is written beside it (tuned.md). The pieces
that build a model, a Trainer and length-distributed batches are shared with kernels_bench/bench_step.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nli_qlora.data.batches import Encoded, batch_token_counts, bucketed_batches, collate, encode
from nli_qlora.config import PRESETS, OneLineParser, RunConfig, add_config_flags, resolve
from nli_qlora.infra.errors import UserError
from nli_qlora.tools.memory import parse_budget
from nli_qlora.training.step import Trainer, to_device, train_step

PROG = "python -m nli_qlora.tune"
DEFAULT_BUDGET = "48GB"  # an A40
DEFAULT_BATCH_SIZES = (4, 8, 16, 32, 64, 128)
CLEARLY_TOO_BIG = 1.25  # skip unmeasured only when the memory estimate exceeds the budget by this factor


# --- what a timed step needs: a model, its tokenizer, a Trainer, batches ------------------------

@dataclass
class Rig:
    """A model built as the loop builds it (4-bit base, LoRA), kept across candidates."""
    cfg: RunConfig
    device: torch.device
    dtype: torch.dtype
    model: torch.nn.Module
    tokenizer: object
    label_ids: list[int]
    counts: dict


def default_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def load_rig(cfg: RunConfig, device: torch.device) -> Rig:
    from nli_qlora.training.recipe import quiet_libraries
    from nli_qlora.model.load import attach_lora, load_model, match_targets, parameter_counts

    quiet_libraries()
    tokenizer, label_ids, dtype, model = load_model(cfg, device)
    matched, _ = match_targets(model, cfg.target_modules)
    model = attach_lora(model, cfg, matched)
    model.train()
    rig = Rig(cfg, device, dtype, model, tokenizer, label_ids, parameter_counts(model))
    set_checkpointing(rig.model, cfg.gradient_checkpointing)
    return rig


def set_checkpointing(model, on: bool) -> None:
    """Toggle gradient checkpointing as the loop enables it (non-reentrant, input grads on)."""
    model.disable_input_require_grads()  # enable twice would leave a stale hook behind
    if on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    else:
        model.gradient_checkpointing_disable()


def build_trainer(rig: Rig, cfg: RunConfig) -> Trainer:
    """A fresh Trainer over the adapters, built as the loop builds it (cfg.step_mode: flat buffer and
    CUDA graphs, or eager), with a fresh optimizer and schedule."""
    from nli_qlora.training.optim import build_optimizer, build_scheduler, quiet_paged_fallback
    from nli_qlora.training.scoring import LabelScorer
    from nli_qlora.training.step import build_trainer as step_trainer

    params = [p for p in rig.model.parameters() if p.requires_grad]
    quiet_paged_fallback()
    return step_trainer(LabelScorer(rig.model, rig.label_ids), params, lambda ps: build_optimizer(cfg, ps)[0],
                        lambda opt: build_scheduler(cfg, opt, total_steps=1000), cfg.loss, cfg.max_grad_norm,
                        cfg.step_mode, cfg.gradient_checkpointing)


def release(rig: Rig) -> None:
    """After the caller dropped its Trainer: free gradients, optimizer state and captured graphs so
    the next candidate starts from the model alone."""
    for p in rig.model.parameters():
        p.grad = None
    gc.collect()
    if rig.device.type == "cuda":
        torch.cuda.empty_cache()


def encoded_rows(cfg: RunConfig, tokenizer, split: str = "train", file: str | None = None, size: int | None = None
                 ) -> list[Encoded]:
    """A split's prompts tokenized as the loop does; rows longer than --max-length are left out."""
    from nli_qlora.data.read import load_split

    file = file if file is not None else {"train": cfg.train_file, "validation": cfg.validation_file,
                                          "test": cfg.test_file}[split]
    size = size if size is not None else {"train": cfg.train_size, "validation": cfg.validation_size,
                                          "test": cfg.test_size}[split]
    examples, stats = load_split(split, file, cfg.dataset, size, cfg.skip_bad_rows)
    rows, _ = encode(examples, tokenizer, cfg.prompt_template, cfg.max_length, stats.source, skip_long=True)
    return rows


def fixed_rows(seq_len: int, count: int, vocab_size: int, seed: int = 0) -> list[Encoded]:
    """Rows of exactly `seq_len` random tokens: a fixed-length workload without any tokenizer."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (count, seq_len), generator=g).tolist()
    labels = torch.randint(0, 3, (count,), generator=g).tolist()
    return [Encoded(tuple(row), label, i) for i, (row, label) in enumerate(zip(ids, labels))]


def answer_ids(cfg: RunConfig, tokenizer) -> list[list[int]] | None:
    """The label words' tokens plus eos, appended to each row for the `lm` loss (as the loop does)."""
    if cfg.loss != "lm":
        return None
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return [tokenizer.encode(w, add_special_tokens=False) + eos for w in cfg.label_words]


def draw_batches(rows: list[Encoded], batch_size: int, grad_accum: int, bucketing: bool, count: int, pad_id: int,
                 pad_multiple: int, seed: int = 0, pin: bool = False, answer: list[list[int]] | None = None
                 ) -> list[list[dict]]:
    """`count` steps' host micro-batches, sampled as the loop samples an epoch (full batches only).

    Each step is `batch_size` rows sorted by length and cut into `grad_accum` micro-batches, as
    the loop's step assembly does."""
    steps, epoch = [], 1
    full = min(batch_size, len(rows))
    lengths = [len(r.prompt_ids) for r in rows]
    while len(steps) < count:
        for idx in bucketed_batches(lengths, batch_size, seed, epoch, bucketing):
            if len(idx) < full:
                continue
            chosen = sorted((rows[i] for i in idx), key=lambda r: len(r.prompt_ids))
            micro = -(-len(chosen) // grad_accum)
            steps.append([collate(chosen[i:i + micro], pad_id, pad_multiple, answer, pin=pin)
                          for i in range(0, len(chosen), micro)])
            if len(steps) == count:
                break
        epoch += 1
    return steps


def step_shape(micro: list[dict]) -> tuple:
    return tuple(tuple(b["input_ids"].shape) for b in micro)


def with_warmup(measured: list[list[dict]], extra: int) -> list[list[dict]]:
    """Warm-up steps, then the measured ones: `extra` steps plus one step of every batch shape
    measured, so that steady state is timed (the fast step captures a CUDA graph per shape once
    per run; a real run meets each shape many times)."""
    first: dict[tuple, list[dict]] = {}
    for micro in measured:
        first.setdefault(step_shape(micro), micro)
    return measured[:extra] + list(first.values()) + measured


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_step(trainer: Trainer, micro: list[dict], device: torch.device) -> dict:
    """One timed unit: host-to-device copy plus the loop's step, ended by a device sync."""
    stats = train_step(trainer, [to_device(b, device) for b in micro])
    synchronize(device)
    return stats


def step_counts(micro: list[dict]) -> tuple[int, int, int]:
    """(samples, real tokens, tokens including padding) of one step's host micro-batches."""
    samples = real = padded = 0
    for b in micro:
        t, p = batch_token_counts(b)
        samples, real, padded = samples + int(b["labels"].shape[0]), real + t, padded + p
    return samples, real, padded


# --- the tuner ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    batch_size: int
    grad_accum: int
    gradient_checkpointing: bool
    bucketing: bool

    @property
    def micro_batch(self) -> int:
        return self.batch_size // self.grad_accum

    def label(self) -> str:
        return (f"batch {self.batch_size} (micro {self.micro_batch} x {self.grad_accum}), "
                f"checkpointing {'on' if self.gradient_checkpointing else 'off'}, "
                f"bucketing {'on' if self.bucketing else 'off'}")


@dataclass
class Result:
    candidate: Candidate
    status: str  # "ok", "does not fit", "skipped (...)"
    step_s: float | None = None  # median
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    padding_fraction: float | None = None
    peak_gb: float | None = None


def candidates(cfg: RunConfig, batch_sizes: list[int], keep_effective_batch: bool) -> list[Candidate]:
    """Ordered so that, per (checkpointing, bucketing), micro-batches grow: the first that does
    not fit ends that line (anything larger would not fit either)."""
    if keep_effective_batch:
        b = cfg.batch_size
        shapes = [(b, ga) for ga in sorted((d for d in range(1, b + 1) if b % d == 0), reverse=True)]
    else:
        shapes = [(b, 1) for b in sorted(set(batch_sizes))]
    return [Candidate(b, ga, ckpt, bucket) for ckpt in (False, True) for bucket in (True, False) for b, ga in shapes]


def memory_estimate(rig: Rig, cfg: RunConfig, cand: Candidate, seq_len: int) -> int | None:
    """nli_qlora.memory's estimate when that module exists; None otherwise (it is only a shortcut)."""
    try:
        from nli_qlora.tools import memory
    except ImportError:
        return None
    run_cfg = dataclasses.replace(cfg, batch_size=cand.batch_size, grad_accum=cand.grad_accum,
                                  gradient_checkpointing=cand.gradient_checkpointing, bucketing=cand.bucketing)
    try:
        estimate = memory.estimate_peak_bytes(rig.model.config, run_cfg, cand.micro_batch, seq_len)
        return int(estimate["total"] if isinstance(estimate, dict) else estimate)
    except Exception as err:  # an estimate that cannot be made must not stop a measurement
        print(f"{PROG}: note: no memory estimate ({type(err).__name__}: {err}); measuring instead", file=sys.stderr)
        return None


def measure(rig: Rig, cfg: RunConfig, cand: Candidate, rows: list[Encoded], steps: int, warmup: int) -> Result:
    """Time `steps` steps after warm-up ones (`warmup`, plus one per batch shape met); out of memory
    means "does not fit"."""
    run_cfg = dataclasses.replace(cfg, batch_size=cand.batch_size, grad_accum=cand.grad_accum,
                                  gradient_checkpointing=cand.gradient_checkpointing, bucketing=cand.bucketing)
    cuda = rig.device.type == "cuda"
    measured = draw_batches(rows, cand.batch_size, cand.grad_accum, cand.bucketing, steps, rig.tokenizer.pad_token_id,
                            cfg.pad_to_multiple, cfg.seed, pin=cuda, answer=answer_ids(cfg, rig.tokenizer))
    plan = with_warmup(measured, warmup)
    trainer, times, oom = None, [], False
    try:
        set_checkpointing(rig.model, cand.gradient_checkpointing)
        trainer = build_trainer(rig, run_cfg)
        if cuda:
            torch.cuda.reset_peak_memory_stats(rig.device)
        for micro in plan:
            synchronize(rig.device)
            t0 = time.perf_counter()
            run_step(trainer, micro, rig.device)
            times.append(time.perf_counter() - t0)
    except torch.OutOfMemoryError:
        oom = True  # leaving the except block frees the traceback's activations
    except RuntimeError as err:  # e.g. an allocation failing inside a CUDA graph capture
        if "out of memory" not in str(err):
            raise
        oom = True
    peak = round(torch.cuda.max_memory_reserved(rig.device) / 1e9, 3) if cuda else None
    trainer = None
    release(rig)
    if oom:
        return Result(cand, "does not fit", peak_gb=peak)
    times = times[-len(measured):]
    total = sum(times)
    samples, real, padded = (sum(c[k] for c in map(step_counts, measured)) for k in range(3))
    return Result(cand, "ok", step_s=statistics.median(times), samples_per_s=samples / total,
                  tokens_per_s=real / total, padding_fraction=1 - real / padded, peak_gb=peak)


def enforce_budget(budget: int, device: torch.device) -> str:
    """Cap this process's GPU allocator so that allocations past the budget fail as they would there."""
    if device.type != "cuda":
        return "CPU: the memory budget is not enforced (no GPU allocator to cap); every candidate runs"
    free, total = torch.cuda.mem_get_info(device)
    outside = total - free - torch.cuda.memory_reserved(device)  # CUDA context, other processes
    if budget >= total:
        return (f"the budget {budget / 1e9:.1f} GB is at least this card's {total / 1e9:.1f} GB: "
                f"only the card limits the candidates")
    allowed = budget - outside
    if allowed <= 0:
        raise UserError(f"--memory-budget: {budget / 1e9:.1f} GB is less than the {outside / 1e9:.1f} GB "
                        f"already in use on this GPU")
    index = device.index if device.index is not None else torch.cuda.current_device()  # it takes no bare "cuda"
    torch.cuda.set_per_process_memory_fraction(allowed / total, index)
    return (f"budget {budget / 1e9:.1f} GB enforced: allocator capped at {allowed / 1e9:.1f} GB of this card's "
            f"{total / 1e9:.1f} GB ({outside / 1e9:.2f} GB already in use outside it)")


def tune(rig: Rig, cfg: RunConfig, cands: list[Candidate], rows: list[Encoded], budget: int, steps: int,
         warmup: int, log=print) -> list[Result]:
    results: list[Result] = []
    too_big: dict[tuple[bool, bool], int] = {}  # smallest micro-batch that did not fit, per line
    longest = max(len(r.prompt_ids) for r in rows)
    for cand in cands:
        line = (cand.gradient_checkpointing, cand.bucketing)
        if line in too_big and cand.micro_batch >= too_big[line]:
            results.append(Result(cand, f"skipped (micro-batch {too_big[line]} did not fit)"))
            continue
        estimate = memory_estimate(rig, cfg, cand, longest)
        if estimate is not None and estimate > CLEARLY_TOO_BIG * budget:
            results.append(Result(cand, f"skipped (estimated {estimate / 1e9:.1f} GB)"))
            continue
        result = measure(rig, cfg, cand, rows, steps, warmup)
        if result.status == "does not fit":
            too_big[line] = cand.micro_batch
        results.append(result)
        log(f"{cand.label()}: {result.status}" + (f", {result.samples_per_s:.1f} samples/s"
                                                   if result.status == "ok" else ""))
    return results


def fastest(results: list[Result]) -> Result | None:
    fitting = [r for r in results if r.status == "ok"]
    return max(fitting, key=lambda r: r.samples_per_s) if fitting else None


# --- output -------------------------------------------------------------------------------------

def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_rows(results: list[Result], best: Result | None) -> list[list[str]]:
    rows = []
    for r in results:
        c = r.candidate
        rows.append([str(c.batch_size), str(c.grad_accum), str(c.micro_batch),
                     "on" if c.gradient_checkpointing else "off",
                     "on" if c.bucketing else "off", r.status, _fmt(r.step_s and r.step_s * 1e3, ".1f"),
                     _fmt(r.samples_per_s, ".1f"), _fmt(r.tokens_per_s, ".0f"),
                     _fmt(r.padding_fraction and 100 * r.padding_fraction, ".1f"), _fmt(r.peak_gb, ".2f"),
                     "fastest" if r is best else ""])
    return rows


HEADER = ["batch", "grad_accum", "micro", "ckpt", "bucketing", "status", "step ms (median)", "samples/s",
          "real tokens/s", "padding %", "peak GB (reserved)", ""]


def settings_of(cfg: RunConfig, best: Result) -> dict:
    c = best.candidate
    out = {"model": cfg.model}
    if cfg.tokenizer:
        out["tokenizer"] = cfg.tokenizer
    out.update(batch_size=c.batch_size, grad_accum=c.grad_accum, gradient_checkpointing=c.gradient_checkpointing,
               bucketing=c.bucketing)
    return out


def write_outputs(out: Path, settings: dict, results: list[Result], best: Result, context: list[str]) -> Path:
    """The YAML config (RunConfig keys) and, beside it, the measured table in markdown."""
    import yaml

    from nli_qlora.infra.atomic import write_text
    comments = "".join(f"# {line}\n" for line in context)
    write_text(out, f"# written by {PROG}; measured table: {out.with_suffix('.md').name}\n" + comments
               + yaml.safe_dump(settings, sort_keys=False))
    md = out.with_suffix(".md")
    lines = [f"# Tuned settings: {out.name}", ""] + [f"- {line}" for line in context] + [""]
    lines += ["| " + " | ".join(HEADER[:-1]) + " | |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results, best)]
    write_text(md, "\n".join(lines) + "\n")
    return md


def print_table(results: list[Result], best: Result | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="measured candidates (fastest = most samples/s)")
    for name in HEADER:
        table.add_column(name, justify="right" if name not in ("status", "") else "left")
    for row, r in zip(table_rows(results, best), results):
        table.add_row(*row, style="bold green" if r is best else ("dim" if r.status != "ok" else None))
    console = Console(stderr=True)
    if not console.is_terminal:
        console.width = 140  # piped: keep the table readable in a log
    console.print(table)


# --- CLI ----------------------------------------------------------------------------------------

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
    if args.steps < 1:
        raise UserError(f"--steps: must be at least 1, got {args.steps}")
    if min(args.batch_sizes) < 1:
        raise UserError(f"--batch-sizes: must be at least 1, got {min(args.batch_sizes)}")
    if args.warmup < 0:
        raise UserError("--warmup: must be 0 or more")
    device = default_device()
    note = enforce_budget(budget, device)
    print(f"{PROG}: {note}", file=sys.stderr)
    rig = load_rig(cfg, device)
    rows = encoded_rows(cfg, rig.tokenizer)
    if not rows:
        raise UserError("no training rows within --max-length to measure with")
    lengths = sorted(len(r.prompt_ids) for r in rows)
    print(f"{PROG}: {len(rows)} training rows, prompt tokens median {lengths[len(lengths) // 2]}, "
          f"longest {lengths[-1]}; device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}",
          file=sys.stderr)
    cands = candidates(cfg, args.batch_sizes, args.keep_effective_batch)
    results = tune(rig, cfg, cands, rows, budget, args.steps, args.warmup,
                   log=lambda m: print(f"{PROG}: {m}", file=sys.stderr))
    best = fastest(results)
    print_table(results, best)
    if best is None:
        raise UserError(f"--memory-budget: no candidate fits in {args.memory_budget}; try "
                        f"--gradient-checkpointing or smaller --batch-sizes")
    context = [f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; {note}",
               f"measured {time.strftime('%Y-%m-%d %H:%M')} with {args.steps} timed steps after {args.warmup} "
               f"warm-up steps per candidate on {len(rows)} training rows",
               f"fastest that fits: {best.candidate.label()}: {best.samples_per_s:.1f} samples/s",
               "speed ranks are this device's; memory fit is the budget's"]
    if args.keep_effective_batch:
        context.append(f"effective batch kept at {cfg.batch_size}")
    elif best.candidate.batch_size != cfg.batch_size:
        context.append(f"the batch size changed from {cfg.batch_size}: learning rate and steps per epoch "
                       f"change with it (--keep-effective-batch keeps it)")
    md = write_outputs(out, settings_of(cfg, best), results, best, context)
    print(f"{PROG}: wrote {out} and {md}", file=sys.stderr)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
