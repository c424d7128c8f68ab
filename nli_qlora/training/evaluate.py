"""Evaluation: label logits for every row (batched by length, original order restored) and their metrics."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from nli_qlora.data.batches import Encoded, collate, eval_batches
from nli_qlora.training.classification import summarize
from nli_qlora.infra.distributed import World
from nli_qlora.model.compile_layers import uncompiled
from nli_qlora.labels import NLI_NAMES
from nli_qlora.training.scoring import LabelScorer
from nli_qlora.training.step import to_device


@torch.no_grad()
def predict(scorer: LabelScorer, rows: list[Encoded], batch_size: int, pad_id: int, pad_multiple: int = 8,
            progress=None) -> np.ndarray:
    """Label logits [len(rows), classes], float32, in the order of `rows`."""
    was_training = scorer.model.training
    scorer.model.eval()
    device = scorer.label_ids.device
    out = np.zeros((len(rows), len(scorer.label_ids)), dtype=np.float32)
    lengths = [len(r.prompt_ids) for r in rows]
    try:
        with uncompiled():  # --compile's layers compile for the training step only (model.compile_layers)
            for idx in eval_batches(lengths, batch_size):
                batch = collate([rows[i] for i in idx], pad_id, pad_multiple, pin=device.type == "cuda")
                logits = scorer.label_logits(to_device(batch, device))
                out[idx] = logits.float().cpu().numpy()  # host sync per batch
                if progress is not None:
                    progress(len(idx))
    finally:
        scorer.model.train(was_training)
    return out


def evaluate(scorer: LabelScorer, rows: list[Encoded], batch_size: int, pad_id: int, pad_multiple: int = 8,
             world: World | None = None, names: tuple[str, ...] = NLI_NAMES) -> tuple[dict, np.ndarray]:
    """(metrics, logits): loss is the cross-entropy over the label logits (classes named `names`). Under data
    parallelism each rank scores its shard and every rank gets all rows' logits: each row once."""
    start = time.perf_counter()
    world = world or World()
    part = predict(scorer, world.shard(rows), batch_size, pad_id, pad_multiple)
    logits = world.gather_rows(part, len(rows))
    gold = np.array([r.label for r in rows])
    pred = logits.argmax(axis=1)
    metrics = summarize(gold, pred, names)
    metrics["loss"] = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(gold)).item())
    metrics["eval_time_s"] = round(time.perf_counter() - start, 4)
    return metrics, logits
