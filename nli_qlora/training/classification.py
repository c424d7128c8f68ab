"""Classification metrics over the three NLI classes: the published report's balanced accuracy and the rest."""

from __future__ import annotations

import numpy as np

from nli_qlora.config import LABELS


def confusion(gold, pred, n: int = 3) -> np.ndarray:
    """Rows = gold, columns = predicted."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(gold, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m


def summarize(gold, pred) -> dict:
    """Accuracy, balanced accuracy (mean recall over classes present in gold), per-class P/R/F1, confusion."""
    m = confusion(gold, pred)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    tp = np.diag(m)
    recall = np.divide(tp, support, out=np.zeros(3), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(3), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(3), where=(precision + recall) > 0)
    present = support > 0
    total = int(m.sum())
    return {
        "rows": total,
        "accuracy": float(tp.sum() / total) if total else None,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else None,
        "per_class_recall": {LABELS[i]: float(recall[i]) for i in range(3)},
        "per_class_precision": {LABELS[i]: float(precision[i]) for i in range(3)},
        "per_class_f1": {LABELS[i]: float(f1[i]) for i in range(3)},
        "support": {LABELS[i]: int(support[i]) for i in range(3)},
        "confusion": m.tolist(),
        "labels": list(LABELS),
    }
