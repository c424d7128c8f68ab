"""Scoring a stream of rows: read a chunk, tokenize it under each model's prompt, score it with the
training loop's label-token scorer (training.evaluate.predict), write its rows in input order.
Nothing outlives a chunk but counts, so memory stays bounded on any input size."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from itertools import chain
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from nli_qlora.data.batches import encode
from nli_qlora.data.prompt import format_prompt
from nli_qlora.data.read import BadRow, Example, iter_records, parse_record
from nli_qlora.infra.errors import UserError
from nli_qlora.labels import LabelSet
from nli_qlora.predict.targets import Loaded
from nli_qlora.run.predictions import failure_cases, prediction_row
from nli_qlora.training.classification import summarize
from nli_qlora.training.evaluate import predict


def encode_for(m: Loaded, examples: list[Example]) -> tuple[dict, dict[int, str]]:
    """(Encoded rows by example index, too-long reasons by example index) under this model's prompt."""
    rows, _ = encode(examples, m.tokenizer, m.cfg.prompt_template, m.cfg.max_length, m.target.name, skip_long=True)
    kept = {r.index: r for r in rows}
    too_long = {}
    for i, ex in enumerate(examples):
        if i not in kept:
            n = len(m.tokenizer(format_prompt(m.cfg.prompt_template, ex.premise, ex.hypothesis))["input_ids"])
            too_long[i] = f"prompt is {n} tokens, over --max-length {m.cfg.max_length}"
    return kept, too_long


def score_examples(models: list[Loaded], examples: list[Example],
                   progress: Callable[[int], None] | None = None) -> tuple[list[int], list[np.ndarray], dict[int, str]]:
    """(indices scored, probabilities [len(scored), 3] per model, reasons for the rest).

    A row too long for any of the models is an error row for all, so every model scores the same rows."""
    encoded = [encode_for(m, examples) for m in models]
    errors: dict[int, str] = {}
    for k, (_, too_long) in enumerate(encoded):
        for i, reason in too_long.items():
            errors.setdefault(i, reason if k == 0 else f"{reason} of the --compare model")
    good = [i for i in range(len(examples)) if i not in errors]
    probs = []
    for k, (m, (kept, _)) in enumerate(zip(models, encoded)):
        logits = predict(m.scorer, [kept[i] for i in good], m.cfg.eval_batch_size, m.tokenizer.pad_token_id,
                         m.cfg.pad_to_multiple, progress=progress if k == 0 else None)
        if not np.isfinite(logits).all():  # NaN probabilities must never be written as predictions
            first = examples[good[int(np.flatnonzero(~np.isfinite(logits).all(axis=1))[0])]].line
            raise UserError(f"{m.target.flag} {m.target.name}: the model gives non-finite label logits (NaN or "
                            f"inf), first at input line {first}; its weights are damaged or diverged")
        probs.append(torch.softmax(torch.from_numpy(logits), dim=1).numpy())
    return good, probs, errors


# --- streaming ------------------------------------------------------------------------------------

def chunked(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def parse(line: int, record, labels: LabelSet) -> Example | BadRow:
    if isinstance(record, BadRow):
        return record
    parsed = parse_record(record, line, labels)
    return parsed[1] if isinstance(parsed, tuple) else parsed  # (UNLABELED, example): scored, no gold


def records_or_empty(path: str, fmt: str | None) -> Iterator[tuple[int, object]]:
    """The input's records; reading the first one now turns a missing or empty input into one clear line
    before any model loads."""
    records = iter_records(path, fmt)
    first = next(records, None)
    if first is None:
        raise UserError(f"--input: {'stdin' if path == '-' else path} has no rows")
    return chain([first], records)


@dataclass
class Tally:
    names: tuple[str, ...]  # the label set's class names: rows and columns of the confusion matrices
    rows_in: int = 0
    scored: int = 0
    unlabelled: int = 0
    confusion: np.ndarray = None
    compare_confusion: np.ndarray = None
    cases: dict = dataclasses.field(default_factory=lambda: {"corrected": 0, "not_corrected": 0, "regressed": 0,
                                                              "both_right": 0})

    def __post_init__(self) -> None:
        n = len(self.names)
        self.confusion = np.zeros((n, n), dtype=np.int64)
        self.compare_confusion = np.zeros((n, n), dtype=np.int64)


def summary(confusion: np.ndarray, names: tuple[str, ...]) -> dict:
    """classification.summarize over the rows a confusion matrix counts (kept instead of every row)."""
    n = len(names)
    cells = confusion.reshape(-1)
    return summarize(np.repeat(np.repeat(np.arange(n), n), cells), np.repeat(np.tile(np.arange(n), n), cells), names)


def score_stream(models: list[Loaded], records, chunk_rows: int, out, errors, compare_out, tally: Tally,
                 progress: Callable[[int], None] | None = None) -> None:
    """Read a chunk, score it, write its rows in input order; repeat. Nothing outlives a chunk but counts."""
    for chunk in chunked(records, chunk_rows):
        labels = models[0].cfg.label_set
        items = [parse(line, record, labels) for line, record in chunk]
        examples = [it for it in items if isinstance(it, Example)]
        good, probs, too_long = score_examples(models, examples, progress)
        at = {i: k for k, i in enumerate(good)}
        after, before = [], []
        i = -1
        for item in items:
            tally.rows_in += 1
            if isinstance(item, BadRow):
                errors.write(item)
                continue
            i += 1
            if i in too_long:
                errors.write(BadRow(item.line, too_long[i]))
                continue
            row = prediction_row(item, probs[0][at[i]], labels.names)
            out.write(row)
            tally.scored += 1
            if item.label is None:
                tally.unlabelled += 1
                continue
            tally.confusion[item.label, labels.names.index(row["predicted"])] += 1
            if len(models) > 1:
                prev = prediction_row(item, probs[1][at[i]], labels.names)
                tally.compare_confusion[item.label, labels.names.index(prev["predicted"])] += 1
                after.append(row)
                before.append(prev)
        out.flush()
        if len(models) > 1:
            _write_cases(failure_cases(before, after), after, tally, compare_out)


def _write_cases(cases: dict, after: list[dict], tally: Tally, sink) -> None:
    """Count each category and write its rows in input order, each with its category and id."""
    by_line = {}
    for category, rows in cases.items():
        tally.cases[category] += len(rows)
        by_line.update({r["line"]: dict(r, category=category) for r in rows})
    tally.cases["both_right"] += len(after) - len(by_line)
    if sink is None:
        return
    for row in after:
        if row["line"] in by_line:
            sink.write(json.dumps({"category": by_line[row["line"]]["category"], "id": row["id"],
                                   **{k: v for k, v in by_line[row["line"]].items() if k != "category"}},
                                  ensure_ascii=False) + "\n")
