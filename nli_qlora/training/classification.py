"""Classification metrics over a label set's classes: the published report's balanced accuracy and the rest."""

from __future__ import annotations

import numpy as np

from nli_qlora.labels import NLI_NAMES


def confusion(gold, pred, n: int = 3) -> np.ndarray:
    """Rows = gold, columns = predicted."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(gold, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m


def summarize(gold, pred, names: tuple[str, ...] = NLI_NAMES) -> dict:
    """Accuracy, balanced accuracy (mean recall over classes present in gold), per-class P/R/F1, confusion."""
    n = len(names)
    m = confusion(gold, pred, n)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    tp = np.diag(m)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    present = support > 0
    total = int(m.sum())
    return {
        "rows": total,
        "accuracy": float(tp.sum() / total) if total else None,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else None,
        "per_class_recall": {names[i]: float(recall[i]) for i in range(n)},
        "per_class_precision": {names[i]: float(precision[i]) for i in range(n)},
        "per_class_f1": {names[i]: float(f1[i]) for i in range(n)},
        "support": {names[i]: int(support[i]) for i in range(n)},
        "confusion": m.tolist(),
        "labels": list(names),
    }
