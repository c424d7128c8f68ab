"""What to do when the GPU runs out of memory: the policy, as pure functions of the settings.

Training: with --auto-batch the micro-batch is halved (--grad-accum raised so that the effective
batch, --batch-size, stays the same) and the failed step is retried; without it, or when the
micro-batch is already one row, the run stops with a message naming the settings that would fit.
Evaluation: --auto-batch halves --eval-batch-size and redoes the evaluation (its result does not
depend on the batch size beyond float rounding). The loop applies the decision (oom_retry)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from nli_qlora.config import RunConfig
from nli_qlora.infra.errors import UserError


class OutOfMemory(UserError):
    """The settings do not fit the GPU: a settings problem the user fixes, exit status 2."""


@dataclass(frozen=True)
class Retry:
    cfg: RunConfig  # the settings to retry with
    message: str  # for the `warning` event (kind "auto_batch") and the terminal


def micro_batch(cfg: RunConfig) -> int:
    return cfg.batch_size // cfg.grad_accum


def halved_grad_accum(batch_size: int, grad_accum: int) -> int | None:
    """The smallest gradient accumulation >= 2x the current that divides the batch: the micro-batch
    at most halves and the effective batch stays. None when the micro-batch is already 1."""
    for g in range(2 * grad_accum, batch_size + 1):
        if batch_size % g == 0:
            return g
    return None


def tune_command(cfg: RunConfig, run_dir, total_memory_gb: float | None) -> str:
    budget = f" --memory-budget {int(total_memory_gb)}GB" if total_memory_gb else ""
    return f"python -m nli_qlora.tune --config {run_dir}/config.json{budget} --keep-effective-batch"


def train_oom(cfg: RunConfig, step: int, run_dir, total_memory_gb: float | None = None) -> Retry:
    """The decision for an out-of-memory error in training step `step`: a Retry, or OutOfMemory raised."""
    micro = micro_batch(cfg)
    g = halved_grad_accum(cfg.batch_size, cfg.grad_accum)
    where = (f"CUDA out of memory in training step {step} with micro-batch {micro} "
             f"(--batch-size {cfg.batch_size} / --grad-accum {cfg.grad_accum})")
    if cfg.auto_batch and g is not None:
        new = replace(cfg, grad_accum=g)
        return Retry(new, f"{where}: retrying with micro-batch {micro_batch(new)} (--grad-accum {g}); "
                          f"the effective batch stays {cfg.batch_size}")
    flags = ([f"--grad-accum {g}"] if g is not None else []) + \
            ([] if cfg.gradient_checkpointing else ["--gradient-checkpointing"])
    if g is not None:
        need = f"--grad-accum {g} (micro-batch {cfg.batch_size // g}, same effective batch)"
        need += "" if cfg.gradient_checkpointing else " and --gradient-checkpointing"
        need += "" if cfg.auto_batch else "; --auto-batch halves the micro-batch by itself"
    elif flags:
        need = "--gradient-checkpointing (the micro-batch is already 1 row)"
    else:
        need = f"a lower --max-length (now {cfg.max_length}); the micro-batch is already 1 row"
    cont = f"; continue with: python -m nli_qlora.train --resume {run_dir} {' '.join(flags)}" if flags else ""
    raise OutOfMemory(f"{where}. Needs less memory: {need}{cont}; measure what fits: "
                      f"{tune_command(cfg, run_dir, total_memory_gb)}")


def eval_oom(cfg: RunConfig, split: str, run_dir) -> Retry:
    """The decision for an out-of-memory error while evaluating `split`."""
    size = cfg.eval_batch_size
    where = f"CUDA out of memory evaluating {split} with --eval-batch-size {size}"
    if cfg.auto_batch and size > 1:
        new = replace(cfg, eval_batch_size=size // 2)
        return Retry(new, f"{where}: retrying with --eval-batch-size {size // 2}")
    if size == 1:
        raise OutOfMemory(f"{where}: even one row does not fit; lower --max-length (now {cfg.max_length})")
    raise OutOfMemory(f"{where}: continue with `python -m nli_qlora.train --resume {run_dir} "
                      f"--eval-batch-size {max(1, size // 2)}`, or add --auto-batch to halve it automatically")
