"""`python -m nli_qlora.train --dry-run`: every check a real run makes, on a CPU, without weights.

The published workflow prepared the model and data on a CPU machine and moved to the GPU only for
the final run. This does the same checks a run would make, but collects every problem instead of
stopping at the first, so one dry run lists all that must change:

    settings  -> output directory -> compute dtype -> model configuration and tokenizer
    -> label words -> 4-bit + LoRA skeleton on the meta device (targets, parameter counts)
    -> every split: rows read, dropped and why, prompts over --max-length (tokens cached for the run)
    -> token lengths, padding with and without bucketing -> peak GPU memory vs --memory-budget -> plan

No weights are downloaded or loaded: only the model's configuration and tokenizer files. Exit 0
when a real run would start, 2 with every problem listed when it would not. `--dry-run-json FILE`
writes the whole report for programs; the tables go to stdout, problems to stderr."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from nli_qlora.config import RunConfig, resolve
from nli_qlora.data.batches import padded_length, planned_micro_batches
from nli_qlora.data.prompt import answer_token_ids, format_prompt, label_token_ids
from nli_qlora.data.read import collect, iter_records, load_split, no_rows_left
from nli_qlora.data.token_cache import cache_key, cache_path, load_or_encode
from nli_qlora.infra.atomic import write_text
from nli_qlora.infra.distributed import launched
from nli_qlora.infra.errors import UserError
from nli_qlora.infra.machine import default_device
from nli_qlora.infra.quiet import quiet_libraries
from nli_qlora.model.compile_layers import check_inductor_can_build
from nli_qlora.model.families import MODEL_TYPES
from nli_qlora.model.load import (build_skeleton, check_context, compute_dtype, load_config, load_tokenizer, parameter_counts,
                                  resolve_source, tokenizer_source)
from nli_qlora.tools.memory import estimate_peak_bytes, parse_budget
from nli_qlora.tools.preflight_view import render
from nli_qlora.run.checkpoint import latest
from nli_qlora.run.metrics import completed_run
from nli_qlora.run.rundir import refuse_flags_on_resume, resume_config, run_dir_for

PROG = "python -m nli_qlora.train"
PREFLIGHT_FLAGS = ("dry_run", "dry_run_json", "memory_budget")  # not settings of the run itself
GB = 10**9


@dataclass
class Report:
    """What the preflight found: `problems` stop a real run; `warnings` do not; `data` is the JSON body."""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def problem(self, err: Exception | str) -> None:
        self.problems.append(str(err))

    def as_json(self) -> dict:
        return {"ok": not self.problems, "exit_status": 2 if self.problems else 0, "problems": self.problems,
                "warnings": self.warnings, "notes": self.notes, **self.data}


# --- the checks, in the order a run meets them ------------------------------------------------------

def check_config(args: argparse.Namespace, parser: argparse.ArgumentParser, report: Report) -> RunConfig | None:
    """The resolved settings (preset -> --config -> flags), or a resumed run's config.json."""
    run_args = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in PREFLIGHT_FLAGS})
    try:
        if args.resume:
            refuse_flags_on_resume(run_args, parser)
            cfg, changed = resume_config(run_args, Path(args.resume))
            if changed:
                report.notes.append("resume changes " + ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items()))
        else:
            cfg = resolve(run_args)
    except UserError as err:
        report.problem(err)
        return None
    report.data["config"] = cfg.to_dict()
    return cfg


def check_output_dir(cfg: RunConfig, args: argparse.Namespace, report: Report) -> None:
    """Writable, and not already holding a run (unless resuming it); nothing is created."""
    run_dir = Path(args.resume) if args.resume else run_dir_for(cfg)
    info = {"path": str(run_dir), "exists": run_dir.exists(), "resume": bool(args.resume)}
    report.data["run_dir"] = info
    if args.resume:
        last = latest(run_dir)
        info["checkpoint"] = str(last) if last else None
        report.notes.append(f"resume: from {last}" if last else "resume: no complete checkpoint yet, starts over")
        if completed_run(run_dir):
            report.notes.append(f"{run_dir} already completed: --resume only rebuilds a missing report")
    elif (run_dir / "metrics.jsonl").exists():
        report.problem(f"--output-dir: {run_dir} already holds a run; continue it with --resume {run_dir} "
                       f"or choose another directory")
        return
    if run_dir.exists() and not run_dir.is_dir():
        report.problem(f"--output-dir: {run_dir} is a file, not a directory")
        return
    parent = run_dir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        report.problem(f"--output-dir: cannot write to {run_dir}: {parent} is not writable")


def check_dtype(cfg: RunConfig, model_type: str | None, report: Report) -> str:
    """The compute dtype the GPU run will use (the memory estimate's), with what it needs."""
    gpu_dtype = "bfloat16" if cfg.compute_dtype == "auto" else cfg.compute_dtype
    if cfg.compute_dtype == "auto":
        report.notes.append("compute dtype: bfloat16 on the GPU (needs bf16: Ampere or newer, e.g. A40, A100, "
                            "H100; an older GPU stops the run), float32 on a CPU")
    elif cfg.compute_dtype == "float16" and model_type == "phi":
        report.warnings.append("--compute-dtype float16: Phi-2 overflows in float16 attention (non-finite losses)")
    if torch.cuda.is_available():
        try:
            compute_dtype(cfg, torch.device("cuda"))
        except UserError as err:
            report.problem(err)
    report.data["compute_dtype_gpu"] = gpu_dtype
    return gpu_dtype


def check_model(cfg: RunConfig, report: Report):
    """(source, model configuration, tokenizer), each None where it could not be read."""
    source = model_config = tok = None
    try:
        source = resolve_source(cfg)
        model_config = load_config(source)
    except UserError as err:
        report.problem(err)
        return source, None, None
    try:
        check_context(model_config, cfg.max_length, cfg.model)
    except UserError as err:
        report.problem(err)
    try:
        tok = load_tokenizer(tokenizer_source(cfg, source))
    except UserError as err:
        report.problem(err)
    model_type = getattr(model_config, "model_type", None)
    report.data["model"] = {"name": cfg.model, "source": source.path, "gguf_file": source.gguf_file,
                            "random_weights": source.random, "model_type": model_type,
                            "layers": getattr(model_config, "num_hidden_layers", None),
                            "hidden_size": getattr(model_config, "hidden_size", None),
                            "vocab_size": getattr(model_config, "vocab_size", None)}
    if tok is not None:
        report.data["tokenizer"] = {"name": tok.name_or_path, "class": type(tok).__name__, "size": len(tok),
                                    "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id}
    return source, model_config, tok


def check_label_words(cfg: RunConfig, tok, report: Report) -> list[int] | None:
    try:
        ids = label_token_ids(tok, cfg.label_words)
    except UserError as err:
        report.problem(err)
        return None
    tokens = tok.convert_ids_to_tokens(ids)
    report.data["label_token_ids"] = {label: {"word": word, "token_id": i, "token": t}
                                      for label, word, i, t in zip(cfg.labels, cfg.label_words, ids, tokens)}
    return ids


def check_skeleton(cfg: RunConfig, source, model_config, report: Report) -> None:
    """LoRA targets and parameter counts from the 4-bit + LoRA model built on the meta device."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, matched, unmatched = build_skeleton(cfg, source)
    except UserError as err:
        linears = _linear_names(model_config)
        report.data["lora_targets"] = {"matched": [], "unmatched": list(cfg.target_modules), "model_linears": linears}
        report.problem(f"{err} (its linear layers: {' '.join(linears)})")
        return
    report.data["lora_targets"] = {"matched": matched, "unmatched": unmatched, "model_linears": _linear_names(model)}
    report.data["params"] = parameter_counts(model)
    if unmatched:
        report.warnings.append(f"LoRA targets {unmatched} match no layer of this model and train nothing")


def _linear_names(model_or_config) -> list[str]:
    """Last name parts of the model's linear layers: what --target-modules can name."""
    model = model_or_config
    if not isinstance(model, torch.nn.Module):
        from accelerate import init_empty_weights
        from transformers import AutoModelForCausalLM
        with init_empty_weights(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_config(model_or_config)
    names = set()
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) or type(mod).__name__ in ("Linear4bit", "Linear8bitLt"):
            name = name.removesuffix(".base_layer")  # peft wraps the base layer of an adapted linear
            if "lora_" not in name:
                names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def check_data(cfg: RunConfig, tok, report: Report) -> dict[str, list]:
    """Every split read with bad rows skipped (so all of them are found), then tokenized through the
    token cache with over-long prompts counted. Returns the selected rows' Encoded per split."""
    out = {}
    report.data["data"] = {}
    for split, file, size in (("train", cfg.train_file, cfg.train_size),
                              ("validation", cfg.validation_file, cfg.validation_size),
                              ("test", cfg.test_file, cfg.test_size)):
        entry = report.data["data"][split] = {"file": file or f"{cfg.dataset}:{split}"}
        examples, stats = _read_split(cfg, split, file, size, entry, report)
        if examples is None or tok is None:
            continue
        rows, too_long = _encode_split(cfg, tok, examples, stats.source, entry, report)
        entry["selected"] = stats.selected = len(rows)
        if not rows and cfg.skip_bad_rows:  # without --skip-bad-rows each long row is a problem already
            report.problem(no_rows_left(split, stats.source, too_long, cfg.max_length))
        if short := stats.shortfall(split):
            report.notes.append(short)
        out[split] = rows
    return out


def _read_split(cfg: RunConfig, split: str, file: str | None, size: int, entry: dict, report: Report):
    try:
        examples, stats = load_split(split, file, cfg.dataset, size, skip_bad=True, labels=cfg.label_set)
    except UserError as err:
        report.problem(err)
        if file and Path(file).is_file():  # a file with no usable row: still name its bad rows
            try:
                _, stats = collect(iter_records(file), file, skip_bad=True, labels=cfg.label_set)
                entry["bad_rows"] = [{"line": b.line, "reason": b.reason} for b in stats.bad_rows]
                _bad_row_problems(cfg, file, stats.bad_rows, report)
            except UserError:
                pass
        return None, None
    entry.update(stats.as_dict())
    entry["bad_rows"] = [{"line": b.line, "reason": b.reason} for b in stats.bad_rows]
    _bad_row_problems(cfg, stats.source, stats.bad_rows, report)
    return examples, stats


def _bad_row_problems(cfg: RunConfig, source: str, bad_rows, report: Report) -> None:
    if not bad_rows:
        return
    if cfg.skip_bad_rows:
        report.notes.append(f"{source}: {len(bad_rows)} bad rows will be skipped (--skip-bad-rows)")
        return
    for b in bad_rows:
        report.problem(f"{source}: line {b.line}: {b.reason} (--skip-bad-rows to skip it)")


def _encode_split(cfg: RunConfig, tok, examples, source: str, entry: dict, report: Report):
    """Tokenize (filling the token cache the real run reads); name every prompt over --max-length."""
    prompts = [format_prompt(cfg.prompt_template, ex.premise, ex.hypothesis) for ex in examples]
    path = cache_path(cache_key(tok, prompts))
    hit = path.is_file()
    rows, too_long = load_or_encode(examples, tok, cfg.prompt_template, cfg.max_length, source, skip_long=True)
    entry["token_cache"] = {"path": str(path), "hit": hit, "written": path.is_file() and not hit}
    kept = {r.index for r in rows}
    long_rows = [i for i in range(len(examples)) if i not in kept]
    lengths = tok([prompts[i] for i in long_rows], add_special_tokens=True)["input_ids"] if long_rows else []
    entry["too_long"] = [{"line": examples[i].line, "tokens": len(ids)} for i, ids in zip(long_rows, lengths)]
    entry["bad_skipped"] = entry.get("bad_skipped", 0) + too_long
    if too_long and cfg.skip_bad_rows:
        report.notes.append(f"{source}: {too_long} prompts over --max-length {cfg.max_length} will be skipped")
    elif too_long:
        for item in entry["too_long"]:
            report.problem(f"{source}: line {item['line']}: prompt is {item['tokens']} tokens, over --max-length "
                           f"{cfg.max_length} (raise it, or --skip-bad-rows)")
    return rows, too_long


# --- what the checks imply: lengths, padding, memory, the plan -------------------------------------

def length_stats(lengths: list[int]) -> dict | None:
    if not lengths:
        return None
    ordered = sorted(lengths)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"rows": len(ordered), "min": ordered[0], "median": statistics.median(ordered), "p95": p95,
            "max": ordered[-1], "mean": round(statistics.fmean(ordered), 2)}


def padding_summary(lengths: list[int], cfg: RunConfig, bucketing: bool, multiple: int) -> dict:
    """Padding over all epochs of the run for one bucketing choice: micro-batches cut as the loop
    cuts them (rows sorted by length, --grad-accum pieces), widths padded to `multiple`."""
    real = padded = 0
    widths = []
    for part in planned_micro_batches(lengths, cfg.batch_size, cfg.grad_accum, cfg.seed, cfg.epochs, bucketing):
        width = padded_length(max(part), multiple)
        real, padded = real + sum(part), padded + width * len(part)
        widths.append(width)
    return {"bucketing": bucketing, "real_tokens": real, "padded_tokens": padded,
            "padding_fraction": round(1 - real / padded, 4) if padded else 0.0,
            "width_p50": statistics.median(widths) if widths else 0, "width_p100": max(widths, default=0),
            "distinct_widths": len(set(widths))}


def check_memory(cfg: RunConfig, model_config, seq_len: int, budget: str, gpu_dtype: str, report: Report) -> None:
    """The estimated peak for the widest micro-batch against the budget (per GPU: under torchrun a
    process holds batch/N rows); a fix suggested when over."""
    try:
        budget_bytes, budget_label = parse_budget(budget)
    except UserError as err:
        report.problem(str(err))
        return
    world = launched().size  # under torchrun each GPU holds its share of the global batch
    per_gpu = -(-cfg.batch_size // world)
    micro = -(-per_gpu // cfg.grad_accum)
    gpu_cfg = replace(cfg, compute_dtype=gpu_dtype)
    terms = estimate_peak_bytes(model_config, gpu_cfg, micro, seq_len)
    fits = terms["total"] <= budget_bytes
    report.data["memory"] = {"micro_batch": micro, "processes": world, "seq_len": seq_len, "gradient_checkpointing": cfg.gradient_checkpointing,
                             "compute_dtype": gpu_dtype, "terms": terms, "total_bytes": terms["total"],
                             "total_gb": round(terms["total"] / GB, 3), "budget": budget_label,
                             "budget_bytes": budget_bytes, "fits": fits}
    family = getattr(model_config, "model_type", None)
    if family not in MODEL_TYPES:  # the decoder layouts tools.memory counts exactly
        report.notes.append(f"memory estimate: model type {family!r} counted as a Llama-style decoder (approximate)")
    if fits:
        return
    hint = _memory_hint(model_config, gpu_cfg, seq_len, budget_bytes) if world == 1 else ""
    report.problem(f"--batch-size {cfg.batch_size}: estimated peak GPU memory {terms['total'] / GB:.1f} GB "
                   f"(micro-batch {micro} x {seq_len} tokens) is over --memory-budget {budget_label}{hint}")


def _memory_hint(model_config, cfg: RunConfig, seq_len: int, budget_bytes: int) -> str:
    if not cfg.gradient_checkpointing:
        on = replace(cfg, gradient_checkpointing=True)
        total = estimate_peak_bytes(model_config, on, -(-cfg.batch_size // cfg.grad_accum), seq_len)["total"]
        if total <= budget_bytes:
            return f"; --gradient-checkpointing would need {total / GB:.1f} GB"
    for accum in range(cfg.grad_accum + 1, cfg.batch_size + 1):
        if cfg.batch_size % accum:
            continue
        total = estimate_peak_bytes(model_config, cfg, cfg.batch_size // accum, seq_len)["total"]
        if total <= budget_bytes:
            return f"; --grad-accum {accum} would need {total / GB:.1f} GB"
    return "; even one row at a time does not fit: a larger GPU, or a shorter --max-length"


def plan(cfg: RunConfig, rows: dict) -> dict:
    n_train = len(rows.get("train", []))
    steps = math.ceil(n_train / cfg.batch_size)
    return {"epochs": cfg.epochs, "steps_per_epoch": steps, "total_steps": steps * cfg.epochs,
            "samples": n_train * cfg.epochs, "micro_batches_per_step": cfg.grad_accum,
            "evaluations": {"validation": cfg.epochs + (1 if cfg.zero_shot_eval else 0),
                            "test": 1 + (1 if cfg.zero_shot_eval else 0)},
            "eval_rows": {s: len(rows.get(s, [])) for s in ("validation", "test")}}


# --- the whole preflight -----------------------------------------------------------------------------

def run_checks(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Report:
    report = Report()
    cfg = check_config(args, parser, report)
    if cfg is None:
        return report
    check_output_dir(cfg, args, report)
    if cfg.compile:  # this machine's compiler for inductor: C++ on a CPU, Triton on a GPU
        try:
            check_inductor_can_build(default_device())
        except UserError as err:
            report.problem(str(err))
    source, model_config, tok = check_model(cfg, report)
    gpu_dtype = check_dtype(cfg, getattr(model_config, "model_type", None), report)
    if tok is not None:
        check_label_words(cfg, tok, report)
    if model_config is not None:
        check_skeleton(cfg, source, model_config, report)
    rows = check_data(cfg, tok, report)
    if tok is None:
        return report
    extra = max(map(len, answer_token_ids(tok, cfg.label_words))) if cfg.loss == "lm" else 0  # as the loop appends
    report.data["token_lengths"] = {s: length_stats([len(r.prompt_ids) for r in rows[s]]) for s in rows}
    train_lengths = [len(r.prompt_ids) + extra for r in rows.get("train", [])]
    multiple = getattr(cfg, "pad_to_multiple", 8)
    if train_lengths:
        on, off = (padding_summary(train_lengths, cfg, b, multiple) for b in (True, False))
        report.data["padding"] = {"batch_size": cfg.batch_size, "pad_multiple": multiple,
                                  "configured": "on" if cfg.bucketing else "off", "on": on, "off": off}
        if model_config is not None:
            seq_len = (on if cfg.bucketing else off)["width_p100"]
            check_memory(cfg, model_config, seq_len, args.memory_budget or "48GB", gpu_dtype, report)  # an A40
    report.data["planned"] = plan(cfg, rows)
    return report


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run every check, show the report, write --dry-run-json; 0 when a real run would start, else 2."""
    try:
        me = launched()
    except UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.exit_code
    if not me.writer:
        return 0  # under torchrun one process checks and reports (rank 0); the others have nothing to add
    quiet_libraries()
    report = run_checks(args, parser)
    if not args.quiet:
        render(report)
    if args.dry_run_json:
        try:
            write_text(args.dry_run_json, json.dumps(report.as_json(), indent=2, default=str) + "\n")
        except OSError as err:
            report.problem(f"--dry-run-json: cannot write {args.dry_run_json}: {err.strerror}")
    for problem in report.problems:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
    if report.problems:
        print(f"{PROG}: dry run: {len(report.problems)} problem(s); a real run would not start", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"{PROG}: dry run: ok, a real run would start", file=sys.stderr)
    return 0
