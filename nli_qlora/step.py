"""The one training step: the loop runs it, the benchmarks time it, the tuner measures it.

    batch(es) -> forward -> loss -> backward -> [finite?] -> clip -> optimizer -> schedule -> zero grad
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nli_qlora.scoring import LabelScorer


@dataclass
class Trainer:
    """What a step needs; built once by the loop (or a benchmark)."""
    scorer: LabelScorer
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    params: list[torch.nn.Parameter]
    loss_kind: str = "label"
    max_grad_norm: float = 1.0


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train_step(t: Trainer, micro_batches: list[dict]) -> dict:
    """One optimizer step over `micro_batches` (gradient accumulation when more than one).

    Returns {"loss": float, "grad_norm": float, "skipped": bool}. A non-finite loss skips the
    update (gradients dropped) so one bad batch cannot poison the adapter weights."""
    rows = sum(int(b["labels"].shape[0]) for b in micro_batches)
    total = None
    for batch in micro_batches:
        loss, _ = t.scorer.loss(batch, t.loss_kind)
        loss = loss * (batch["labels"].shape[0] / rows)
        loss.backward()
        total = loss.detach() if total is None else total + loss.detach()
    loss_value = total.item()  # host sync: the finite check below must see the value
    if not torch.isfinite(torch.tensor(loss_value)):
        t.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss_value, "grad_norm": None, "skipped": True}
    if t.max_grad_norm > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(t.params, t.max_grad_norm)
    else:
        grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in t.params if p.grad is not None]))
    t.optimizer.step()
    t.scheduler.step()
    t.optimizer.zero_grad(set_to_none=True)
    return {"loss": loss_value, "grad_norm": grad_norm.item(), "skipped": False}  # .item(): host sync
