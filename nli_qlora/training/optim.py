"""The optimizer (bitsandbytes paged 8-bit AdamW by default) and the learning-rate schedule."""

from __future__ import annotations

import math
import warnings

import torch

from nli_qlora.config import RunConfig


def build_optimizer(cfg: RunConfig, params: list[torch.nn.Parameter]) -> tuple[torch.optim.Optimizer, list[str]]:
    """(optimizer, warnings to report once). On CPU, bitsandbytes falls back from paged to non-paged
    memory and warns at every step; we catch that here and report it once instead."""
    notes = []
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    else:
        import bitsandbytes as bnb
        cls = bnb.optim.PagedAdamW8bit if cfg.optimizer == "paged_adamw_8bit" else bnb.optim.AdamW8bit
        opt = cls(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "paged_adamw_8bit" and not params[0].is_cuda:
            notes.append("paged optimizers need CUDA: PagedAdamW8bit runs non-paged on CPU (bitsandbytes fallback)")
    return opt, notes


def quiet_paged_fallback() -> None:
    warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU.*")


def lr_lambda(cfg: RunConfig, total_steps: int):
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        if cfg.lr_schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def build_scheduler(cfg: RunConfig, optimizer, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
