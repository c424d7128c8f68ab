"""The optimizer (bitsandbytes paged 8-bit AdamW by default) and the learning-rate schedule."""

from __future__ import annotations

import math

import torch

from nli_qlora.config import RunConfig
from nli_qlora.infra.distributed import World
from nli_qlora.infra.quiet import quiet_paged_fallback
from nli_qlora.model.compile_layers import compile_layers_
from nli_qlora.model.fused_projections import work_order
from nli_qlora.training.scoring import LabelScorer
from nli_qlora.training.step import Trainer, build_trainer


def build_optimizer(cfg: RunConfig, params: list[torch.nn.Parameter]) -> tuple[torch.optim.Optimizer, list[str]]:
    """(optimizer, warnings to report once). On CPU, bitsandbytes falls back from paged to non-paged
    memory and warns at every step; we catch that here and report it once instead."""
    notes = []
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    else:
        import bitsandbytes as bnb  # lazy: only the 8-bit optimizers need it
        cls = bnb.optim.PagedAdamW8bit if cfg.optimizer == "paged_adamw_8bit" else bnb.optim.AdamW8bit
        opt = cls(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "paged_adamw_8bit" and not params[0].is_cuda:
            notes.append("paged optimizers need CUDA: PagedAdamW8bit runs non-paged on CPU (bitsandbytes fallback)")
    return opt, notes


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


def trainer_for(cfg: RunConfig, model, label_ids: list[int], total_steps: int, world: World | None = None,
                step_shapes: int | None = None) -> tuple[Trainer, list[str]]:
    """(the Trainer over the model's trainable LoRA weights, optimizer notes to report once): the one
    the loop runs and the tuner times, in cfg.step_mode with cfg's optimizer and schedule.
    `step_shapes`: the distinct batch shapes the steps will have, where the caller counted them
    (--compile then compiles per shape when they are few: model.compile_layers)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.compile:  # compiles at the first step of a shape (on CUDA, before its graph is captured)
        compile_layers_(model, shapes=step_shapes, attention_kernel=cfg.attention_kernel)
    quiet_paged_fallback()
    notes: list[str] = []

    def make_optimizer(opt_params):
        optimizer, found = build_optimizer(cfg, opt_params)
        notes.extend(found)
        return optimizer

    trainer = build_trainer(LabelScorer(model, label_ids, cfg.attention_kernel), params, make_optimizer,
                            lambda opt: build_scheduler(cfg, opt, total_steps), cfg.loss, cfg.max_grad_norm,
                            cfg.step_mode, cfg.gradient_checkpointing, getattr(torch, cfg.lora_compute_dtype),
                            compiled=cfg.compile, work_order=work_order(model, params) if cfg.fused_projections else None)
    if world is not None:
        trainer.world = world
    return trainer, notes
