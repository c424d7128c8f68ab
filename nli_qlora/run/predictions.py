"""Prediction rows: one per scored example, in the same fields in a run's predictions/*.jsonl and
in the score command's output (docs/scoring.md). `id`, `gold` and `correct` are null when the
input row has no id or gold label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nli_qlora.data.read import Example
from nli_qlora.infra.atomic import open_atomic
from nli_qlora.labels import NLI_NAMES

DIGITS = 6  # probabilities are rounded to this many decimals


def prediction_row(ex: Example, probs: np.ndarray, labels: tuple[str, ...] = NLI_NAMES) -> dict:
    predicted = int(probs.argmax())
    return {"line": ex.line, "id": ex.id, "premise": ex.premise, "hypothesis": ex.hypothesis,
            "predicted": labels[predicted],
            "probabilities": {name: round(float(p), DIGITS) for name, p in zip(labels, probs)},
            "gold": None if ex.label is None else labels[ex.label],
            "correct": None if ex.label is None else predicted == ex.label}


def write_predictions(path: Path, examples: list[Example], probs: np.ndarray,
                      labels: tuple[str, ...] = NLI_NAMES) -> None:
    """JSON Lines, one row per example in the given order, written whole or not at all."""
    with open_atomic(path, "w", encoding="utf-8") as f:
        for ex, p in zip(examples, probs):
            f.write(json.dumps(prediction_row(ex, p, labels), ensure_ascii=False) + "\n")


def read_predictions(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def failure_cases(before: list[dict], after: list[dict]) -> dict:
    """Rows joined by line: corrected (wrong -> right), not corrected (wrong -> wrong), regressed (right -> wrong)."""
    b = {r["line"]: r for r in before}
    cases = {"corrected": [], "not_corrected": [], "regressed": []}
    for r in after:
        prev = b.get(r["line"])
        if prev is None:
            continue
        was, now = prev["predicted"] == prev["gold"], r["predicted"] == r["gold"]
        row = {"line": r["line"], "premise": r["premise"], "hypothesis": r["hypothesis"], "gold": r["gold"],
               "before": prev["predicted"], "after": r["predicted"]}
        if not was and now:
            cases["corrected"].append(row)
        elif not was and not now:
            cases["not_corrected"].append(row)
        elif was and not now:
            cases["regressed"].append(row)
    return cases
