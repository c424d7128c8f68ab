"""Tokenized rows, the length-bucketing sampler and the collate function.

Bucketing: shuffle, cut into pools of many batches, sort each pool by length, cut it into batches,
shuffle the batches. Rows in a batch have similar lengths (little padding), the order still changes
every epoch, and everything is a function of (seed, epoch) so a resumed run sees the same batches."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from nli_qlora.data.read import Example
from nli_qlora.infra.errors import DataError
from nli_qlora.data.prompt import format_prompt

POOL_BATCHES = 64  # batches per sorting pool: larger = less padding, less randomness


@dataclass(frozen=True)
class Encoded:
    prompt_ids: tuple[int, ...]  # the prompt; the answer is predicted after its last token
    label: int | None
    index: int  # position in the split, to restore order and join predictions back to rows


def encode(examples: list[Example], tokenizer, template: str, max_length: int, source: str,
           skip_long: bool = False) -> tuple[list[Encoded], int]:
    """Tokenize prompts in one batched call; rows longer than max_length raise (or are counted when skipped)."""
    prompts = [format_prompt(template, ex.premise, ex.hypothesis) for ex in examples]
    ids = tokenizer(prompts, add_special_tokens=True)["input_ids"] if prompts else []
    out, skipped = [], 0
    for i, (ex, tokens) in enumerate(zip(examples, ids)):
        if len(tokens) > max_length:
            if not skip_long:
                raise DataError(f"{source}: line {ex.line}: prompt is {len(tokens)} tokens, over --max-length "
                                f"{max_length} (raise it, or --skip-bad-rows)")
            skipped += 1
            continue
        out.append(Encoded(tuple(tokens), ex.label, i))
    return out, skipped


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, bucketing: bool = True,
                     shuffle: bool = True) -> list[list[int]]:
    """Index batches for one epoch; the last batch may be short (no row is dropped)."""
    order = list(range(len(lengths)))
    rng = random.Random(seed * 1_000_003 + epoch)
    if shuffle:
        rng.shuffle(order)
    if bucketing:
        pool = batch_size * POOL_BATCHES
        order = [i for start in range(0, len(order), pool)
                 for i in sorted(order[start:start + pool], key=lambda j: lengths[j])]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle and bucketing:
        rng.shuffle(batches)
    return batches


def planned_micro_batches(lengths: list[int], batch_size: int, grad_accum: int, seed: int, epochs: int,
                          bucketing: bool, shard=lambda rows: rows, extra: list[int] | None = None):
    """Every epoch's micro-batches as the loop cuts them (a batch sorted by length, `shard`: this
    process's share, then --grad-accum pieces), each as its rows' sequence lengths: `lengths` (what
    bucketing sorts by) plus `extra` (the lm loss's answer tokens). Counted ahead by the dry run's
    padding figures and --compile's shapes."""
    for epoch in range(1, epochs + 1):
        for idx in bucketed_batches(lengths, batch_size, seed, epoch, bucketing):
            for part in micro_batches(shard(sorted(idx, key=lambda i: lengths[i])), grad_accum):
                yield [lengths[i] + extra[i] for i in part] if extra is not None else [lengths[i] for i in part]


def step_shapes(rows: list[Encoded], batch_size: int, grad_accum: int, seed: int, epochs: int, bucketing: bool,
                pad_multiple: int, answer_ids: list[list[int]] | None = None, shard=lambda rows: rows,
                stop_after: int | None = None) -> set[tuple[int, int]]:
    """The distinct (rows, width) of the micro-batches a run's training steps will have (what
    --compile compiles per shape); counting stops past `stop_after` shapes."""
    extra = [len(answer_ids[r.label]) for r in rows] if answer_ids is not None else None
    shapes: set[tuple[int, int]] = set()
    for part in planned_micro_batches([len(r.prompt_ids) for r in rows], batch_size, grad_accum, seed, epochs,
                                      bucketing, shard, extra):
        if part:
            shapes.add((len(part), padded_length(max(part), pad_multiple)))
        if stop_after is not None and len(shapes) > stop_after:
            break
    return shapes


def micro_batches(rows: list, grad_accum: int) -> list[list]:
    """One step's rows (sorted by length) cut into `grad_accum` micro-batches of at most
    ceil(rows / grad_accum): the one cutting the loop, the tuner and the dry run all use."""
    micro = max(1, -(-len(rows) // grad_accum))
    return [rows[i:i + micro] for i in range(0, len(rows), micro)]


def eval_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Evaluation order: sorted by length (least padding), deterministic; callers restore row order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padded_length(longest: int, multiple: int) -> int:
    return -(-longest // multiple) * multiple if multiple > 1 else longest


def collate(rows: list[Encoded], pad_id: int, pad_multiple: int = 8, answer_ids: list[list[int]] | None = None,
            pin: bool = False) -> dict:
    """Right-padded tensors. With `answer_ids` (the lm loss), each row gets its answer tokens appended
    and `lm_labels` marks every real token; `answer_pos` is always the last prompt token."""
    seqs = [list(r.prompt_ids) + (list(answer_ids[r.label]) if answer_ids is not None else []) for r in rows]
    lengths = torch.tensor([len(s) for s in seqs])
    width = padded_length(int(lengths.max()), pad_multiple)
    # a handful of tensor operations whatever the rows, not three a row: the loop builds a batch on the
    # host between every two steps, while the GPU waits (docs/benchmarks.md, issue 14, ninth round)
    real = torch.arange(width) < lengths[:, None]  # [rows, width]: each row's tokens, then its padding
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    input_ids[real] = torch.tensor([t for seq in seqs for t in seq], dtype=torch.long)  # row-major: row by row
    attention_mask = real.long()
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "answer_pos": torch.tensor([len(r.prompt_ids) - 1 for r in rows]),
        "labels": torch.tensor([-100 if r.label is None else r.label for r in rows]),
        "index": torch.tensor([r.index for r in rows]),
    }
    if answer_ids is not None:
        lm_labels = input_ids.masked_fill(attention_mask == 0, -100)
        batch["lm_labels"] = lm_labels
    if pin:
        batch = {k: v.pin_memory() for k, v in batch.items()}
    return batch


def step_batches(rows: list[Encoded], grad_accum: int, pad_id: int, pad_multiple: int,
                 answer_ids: list[list[int]] | None = None, pin: bool = False) -> list[dict]:
    """One step's rows (sorted by length) as its host micro-batches: micro_batches, then collate. The
    loop builds its steps with it, and the tuner and the benchmarks theirs."""
    return [collate(chunk, pad_id, pad_multiple, answer_ids, pin=pin) for chunk in micro_batches(rows, grad_accum)]


def token_counts(micro_batches: list[list[int]], pad_multiple: int) -> tuple[int, int]:
    """(real tokens, tokens including padding) of micro-batches given as sequence lengths: what
    collate would pad them to, without building them (a rank counts the whole global batch)."""
    tokens = padded = 0
    for lengths in micro_batches:
        if lengths:
            tokens += sum(lengths)
            padded += len(lengths) * padded_length(max(lengths), pad_multiple)
    return tokens, padded


def batch_token_counts(batch: dict) -> tuple[int, int]:
    """(real tokens, tokens including padding) — computed on the host copy, no device sync."""
    mask = batch["attention_mask"]
    return int(mask.sum()), mask.numel()
