"""The batch tuner behind `python -m nli_qlora.tune`: measure batch settings, keep the fastest that fit a budget.

Every candidate (batch size, gradient accumulation, gradient checkpointing, bucketing, and whether the
4-bit base is kept dequantized: `--dequantize-base`, more memory for fewer kernels) runs the loop's
own step, timed as the loop times it (`nli_qlora.training.step.loop_step`), on batches drawn from the configured training data's real length
distribution: there is no second step. On a GPU the budget is enforced through the allocator's
per-process memory fraction, so a candidate too big for the target card (an A40's 48 GB by default)
raises `torch.OutOfMemoryError` here too and is recorded as "does not fit". On CPU nothing is enforced.

    python -m nli_qlora.tune --model random:phi-2 --memory-budget 48GB --out tuned.yaml
    python -m nli_qlora.train --config tuned.yaml ...

The YAML holds RunConfig field names; the measured table is written beside it (tuned.md). The pieces
that build a model, a Trainer and length-distributed batches are shared with kernels_bench/bench_step.py.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from nli_qlora.config import RunConfig
from nli_qlora.data.batches import (Encoded, batch_token_counts, bucketed_batches, encode, padded_length,
                                   step_batches)
from nli_qlora.data.read import load_split
from nli_qlora.infra.atomic import write_text
from nli_qlora.infra.errors import UserError
from nli_qlora.infra.quiet import quiet_libraries
from nli_qlora.model.bundle import ModelBundle, enable_checkpointing, load_bundle, with_lora
from nli_qlora.model.compile_layers import uncompiled
from nli_qlora.model.dequantize import dequantize_base_
from nli_qlora.tools.memory import estimate_peak_bytes
from nli_qlora.training.optim import trainer_for
from nli_qlora.training.step import loop_step

PROG = "python -m nli_qlora.tune"
CLEARLY_TOO_BIG = 1.25  # skip unmeasured only when the memory estimate exceeds the budget by this factor


# --- what a timed step needs: a model, its tokenizer, a Trainer, batches ------------------------

def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def prepare(cfg: RunConfig, device: torch.device) -> ModelBundle:
    """The model as the loop builds it (4-bit base, LoRA), kept across candidates."""
    quiet_libraries()
    bundle = with_lora(load_bundle(cfg, device))
    bundle.model.train()
    set_checkpointing(bundle.model, cfg.gradient_checkpointing)
    return bundle


def set_checkpointing(model, on: bool) -> None:
    """Toggle gradient checkpointing between candidates, as the loop enables it."""
    model.disable_input_require_grads()  # enable twice would leave a stale hook behind
    if on:
        enable_checkpointing(model)
    else:
        model.gradient_checkpointing_disable()


def release(bundle: ModelBundle) -> None:
    """After the caller dropped its Trainer: free gradients, optimizer state and captured graphs so
    the next candidate starts from the model alone."""
    for p in bundle.model.parameters():
        p.grad = None
    gc.collect()
    if bundle.device.type == "cuda":
        torch.cuda.empty_cache()


def encoded_rows(cfg: RunConfig, tokenizer, split: str = "train", file: str | None = None, size: int | None = None
                 ) -> list[Encoded]:
    """A split's prompts tokenized as the loop does; rows longer than --max-length are left out."""
    file = file if file is not None else {"train": cfg.train_file, "validation": cfg.validation_file,
                                          "test": cfg.test_file}[split]
    size = size if size is not None else {"train": cfg.train_size, "validation": cfg.validation_size,
                                          "test": cfg.test_size}[split]
    examples, stats = load_split(split, file, cfg.dataset, size, cfg.skip_bad_rows, cfg.label_set)
    rows, _ = encode(examples, tokenizer, cfg.prompt_template, cfg.max_length, stats.source, skip_long=True)
    return rows


def fixed_rows(seq_len: int, count: int, vocab_size: int, seed: int = 0) -> list[Encoded]:
    """Rows of exactly `seq_len` random tokens: a fixed-length workload without any tokenizer."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (count, seq_len), generator=g).tolist()
    labels = torch.randint(0, 3, (count,), generator=g).tolist()
    return [Encoded(tuple(row), label, i) for i, (row, label) in enumerate(zip(ids, labels))]


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
            steps.append(step_batches(chosen, grad_accum, pad_id, pad_multiple, answer, pin))
            if len(steps) == count:
                break
        epoch += 1
    return steps


def widest_step(rows: list[Encoded], batch_size: int, grad_accum: int, pad_id: int, pad_multiple: int,
                pin: bool = False, answer: list[list[int]] | None = None) -> list[dict]:
    """The step a run's epoch can hold at its most memory: the `batch_size` longest rows. The sampled
    steps rarely reach the longest rows (SNLI: about 80 of 128 tokens), and a candidate must fit the
    widest step the run will meet, not only the typical one."""
    chosen = sorted(rows, key=lambda r: len(r.prompt_ids))[-min(batch_size, len(rows)):]
    return step_batches(chosen, grad_accum, pad_id, pad_multiple, answer, pin)


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
    dequantize_base: bool = False

    @property
    def micro_batch(self) -> int:
        return self.batch_size // self.grad_accum

    def label(self) -> str:
        return (f"batch {self.batch_size} (micro {self.micro_batch} x {self.grad_accum}), "
                f"checkpointing {'on' if self.gradient_checkpointing else 'off'}, "
                f"bucketing {'on' if self.bucketing else 'off'}"
                + (", base dequantized" if self.dequantize_base else ""))

    def settings(self, cfg: RunConfig) -> dict:
        """The RunConfig fields a candidate sets over `cfg`: --compile stays off where checkpointing is on
        (the two are not combined; measure() times those candidates uncompiled)."""
        return dict(batch_size=self.batch_size, grad_accum=self.grad_accum,
                    gradient_checkpointing=self.gradient_checkpointing, bucketing=self.bucketing,
                    dequantize_base=self.dequantize_base, compile=cfg.compile and not self.gradient_checkpointing)


@dataclass
class Result:
    candidate: Candidate
    status: str  # "ok", "does not fit", "skipped (...)"
    step_s: float | None = None  # median
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    padding_fraction: float | None = None
    peak_gb: float | None = None


def candidates(cfg: RunConfig, batch_sizes: list[int], keep_effective_batch: bool,
               bases: tuple[bool, ...] = (False, True)) -> list[Candidate]:
    """Ordered so that, per line (checkpointing, bucketing, base), micro-batches grow: the first that
    does not fit ends that line (anything larger would not fit either). `bases`: the --dequantize-base
    values to try, the 4-bit base first (dequantizing is one-way: tune() does it between the two);
    only the 4-bit one when there is no 4-bit base."""
    if keep_effective_batch:
        b = cfg.batch_size
        shapes = [(b, ga) for ga in sorted((d for d in range(1, b + 1) if b % d == 0), reverse=True)]
    else:
        shapes = [(b, 1) for b in sorted(set(batch_sizes))]
    if cfg.quantization == "none":
        bases = (False,)
    return [Candidate(b, ga, ckpt, bucket, deq) for deq in sorted(set(bases)) for ckpt in (False, True)
            for bucket in (True, False) for b, ga in shapes]


def memory_estimate(rig: ModelBundle, cfg: RunConfig, cand: Candidate, seq_len: int) -> int | None:
    """nli_qlora.tools.memory's estimate; None when it cannot be made (it is only a shortcut)."""
    run_cfg = dataclasses.replace(cfg, **cand.settings(cfg))
    try:
        estimate = estimate_peak_bytes(rig.model.config, run_cfg, cand.micro_batch, seq_len)
        return int(estimate["total"] if isinstance(estimate, dict) else estimate)
    except Exception as err:  # an estimate that cannot be made must not stop a measurement
        print(f"{PROG}: note: no memory estimate ({type(err).__name__}: {err}); measuring instead", file=sys.stderr)
        return None


def measure(rig: ModelBundle, cfg: RunConfig, cand: Candidate, rows: list[Encoded], steps: int, warmup: int) -> Result:
    """Time `steps` steps after warm-up ones: the widest step (widest_step), `warmup` steps and one
    per batch shape met. Out of memory in any of them means "does not fit"."""
    run_cfg = dataclasses.replace(cfg, **cand.settings(cfg))
    cuda, answer, pad_id = rig.device.type == "cuda", rig.appended_answers(cfg.loss), rig.tokenizer.pad_token_id
    measured = draw_batches(rows, cand.batch_size, cand.grad_accum, cand.bucketing, steps, pad_id,
                            cfg.pad_to_multiple, cfg.seed, pin=cuda, answer=answer)
    widest = widest_step(rows, cand.batch_size, cand.grad_accum, pad_id, cfg.pad_to_multiple, pin=cuda, answer=answer)
    plan = [widest] + with_warmup(measured, warmup)
    trainer, times, oom = None, [], False
    try:
        set_checkpointing(rig.model, cand.gradient_checkpointing)
        trainer, _ = trainer_for(run_cfg, rig.model, rig.label_ids, total_steps=1000)
        if cuda:
            torch.cuda.reset_peak_memory_stats(rig.device)
        with uncompiled(unless=run_cfg.compile):  # the layers may be compiled for another candidate
            for i, micro in enumerate(plan):  # the loop's step and its timing, the next step queued meanwhile
                then = (lambda i=i: (plan[i + 1], None)) if i + 1 < len(plan) else None
                _, seconds = loop_step(trainer, None if trainer.queued else micro, rig.device, then=then)
                times.append(seconds)
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
        return ("CPU: the memory budget is not enforced (no GPU allocator to cap); a candidate fits when the "
                "memory estimate is within it")
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


def tune(rig: ModelBundle, cfg: RunConfig, cands: list[Candidate], rows: list[Encoded], budget: int, steps: int,
         warmup: int, log=print) -> list[Result]:
    results: list[Result] = []
    too_big: dict[tuple[bool, bool, bool], int] = {}  # smallest micro-batch that did not fit, per line
    # the widest batch as the loop builds it: padded, with the answer tokens the lm loss appends
    extra = max(map(len, rig.answer_ids)) if cfg.loss == "lm" and rig.answer_ids else 0
    longest = padded_length(max(len(r.prompt_ids) for r in rows) + extra, cfg.pad_to_multiple)
    capped = rig.device.type == "cuda"  # elsewhere no allocator enforces the budget: the estimate decides fit
    for cand in cands:
        line = (cand.gradient_checkpointing, cand.bucketing, cand.dequantize_base)
        if line in too_big and cand.micro_batch >= too_big[line]:
            results.append(Result(cand, f"skipped (micro-batch {too_big[line]} did not fit)"))
            continue
        estimate = memory_estimate(rig, cfg, cand, longest)
        if estimate is not None and estimate > CLEARLY_TOO_BIG * budget:
            results.append(Result(cand, f"skipped (estimated {estimate / 1e9:.1f} GB)"))
            continue
        if not capped and estimate is not None and estimate > budget:  # never "fastest that fits" if it does not
            too_big[line] = min(too_big.get(line, cand.micro_batch), cand.micro_batch)
            results.append(Result(cand, f"does not fit (estimated {estimate / 1e9:.2f} GB)"))
            continue
        if cand.dequantize_base and dequantize_base_(rig.model):  # one-way: the 4-bit lines came first
            log("base dequantized: the candidates from here on keep the 4-bit weights in the compute dtype")
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
                     "on" if c.bucketing else "off", "dequantized" if c.dequantize_base else "4-bit", r.status, _fmt(r.step_s and r.step_s * 1e3, ".1f"),
                     _fmt(r.samples_per_s, ".1f"), _fmt(r.tokens_per_s, ".0f"),
                     _fmt(r.padding_fraction and 100 * r.padding_fraction, ".1f"), _fmt(r.peak_gb, ".2f"),
                     "fastest" if r is best else ""])
    return rows


HEADER = ["batch", "grad_accum", "micro", "ckpt", "bucketing", "base", "status", "step ms (median)", "samples/s",
          "real tokens/s", "padding %", "peak GB (reserved)", ""]


def settings_of(cfg: RunConfig, best: Result) -> dict:
    """The whole config that was measured, with the chosen batch settings: `train --config` on it
    trains exactly that (a file of the batch settings alone would fall back to the default preset's
    model, data, LoRA and learning rate for everything else)."""
    c = best.candidate
    chosen = dataclasses.replace(cfg, **c.settings(cfg))
    out = json.loads(json.dumps(chosen.to_dict()))  # tuples as lists: plain YAML
    out.pop("output_dir", None)  # a run directory of its own
    return out


def write_outputs(out: Path, settings: dict, results: list[Result], best: Result, context: list[str]) -> Path:
    """The YAML config (RunConfig keys) and, beside it, the measured table in markdown."""
    import yaml

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
