"""The report's pictures, drawn from the metrics records alone: the learning curve and the final
test evaluation's confusion matrix, as PNG files beside report.md.

matplotlib is imported only for the report (it takes about half a second to import, and the training
loop never needs it): the train command draws the pictures in a second process (run.figure_worker)
that imports it while the run's last evaluation keeps the GPU busy. Without matplotlib the report says
how to get the pictures instead of failing."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np

from nli_qlora.infra.atomic import write_bytes

LEARNING_CURVE = "learning_curve.png"
CONFUSION_MATRIX = "confusion_matrix.png"
MISSING = ("The pictures (learning curve, confusion matrix) need matplotlib: `pip install matplotlib`, "
           "then `python -m nli_qlora.report RUN_DIR`.")


def smoothed(values: list[float], window: int) -> np.ndarray:
    """A trailing moving average: each point the mean of itself and up to window-1 before it."""
    v = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(v, 0, 0.0))
    ends = np.arange(1, len(v) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def import_matplotlib():
    """pyplot with the Agg backend (no display needed; set before pyplot is imported); ImportError without it."""
    import matplotlib  # lazy: heavy, and only the report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def final_test(records: list[dict]) -> dict | None:
    """The run's last test evaluation after training (the confusion matrix's), or None."""
    test = [r for r in records if r["event"] == "eval" and r["split"] == "test"]
    return test[-1] if test and test[-1]["epoch"] > 0 else None


def curve_records(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(steps, validation evaluations): what the learning curve is drawn from."""
    steps = [r for r in records if r["event"] == "step" and r.get("loss") is not None]
    validation = [r for r in records if r["event"] == "eval" and r["split"] == "validation"]
    return steps, validation


def learning_curve_png(plt, steps: list[dict], validation: list[dict]) -> bytes:
    return _png(plt, _learning_curve(plt, steps, validation))


def confusion_png(plt, final_test: dict) -> bytes:
    return _png(plt, _confusion(plt, final_test))


def write_figures(run_dir: Path, records: list[dict], final_test: dict | None, curve: bytes | None = None) -> list[str] | None:
    """The PNG files written (names relative to run_dir), or None when matplotlib is not installed.
    `curve`: the learning curve's PNG already drawn from these records' steps and validation evaluations."""
    try:
        plt = import_matplotlib()
    except ImportError:
        return None
    written = []
    steps, validation = curve_records(records)
    if steps or validation:
        write_bytes(run_dir / LEARNING_CURVE, curve if curve is not None else learning_curve_png(plt, steps, validation))
        written.append(LEARNING_CURVE)
    if final_test and final_test.get("confusion"):
        write_bytes(run_dir / CONFUSION_MATRIX, confusion_png(plt, final_test))
        written.append(CONFUSION_MATRIX)
    return written


def _png(plt, fig) -> bytes:
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _learning_curve(plt, steps: list[dict], validation: list[dict]):
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    if steps:
        xs, ys = [s["step"] for s in steps], [s["loss"] for s in steps]
        window = max(1, len(ys) // 20)
        loss_ax.plot(xs, ys, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss (each step)")
        loss_ax.plot(xs, smoothed(ys, window), color="tab:blue", linewidth=2,
                     label=f"mean of the last {window} steps" if window > 1 else "loss")
        for s in steps[1:]:  # where each epoch after the first begins
            if s["epoch_step"] == 1:
                loss_ax.axvline(s["step"] - 0.5, color="grey", linestyle=":", linewidth=1)
        loss_ax.legend(fontsize=9)
    loss_ax.set(title="Training loss (dotted lines: epoch boundaries)", xlabel="step", ylabel="loss")
    if validation:
        xs = [e["step"] for e in validation]
        ys = [100 * e["balanced_accuracy"] if e["balanced_accuracy"] is not None else np.nan for e in validation]
        acc_ax.plot(xs, ys, color="tab:orange", marker="o", linewidth=2)
        for x, y, e in zip(xs, ys, validation):
            below = y > 80  # near the top, the label goes under its point
            acc_ax.annotate(f"epoch {e['epoch']}\n{y:.1f}%", (x, y), textcoords="offset points",
                            xytext=(0, -10 if below else 8), va="top" if below else "bottom", ha="center", fontsize=8)
        n = len(validation[0]["labels"]) if validation[0].get("labels") else None
        if n:
            acc_ax.axhline(100 / n, color="grey", linestyle="--", linewidth=1, label=f"chance ({100 / n:.0f}%)")
            acc_ax.legend(fontsize=9, loc="lower right")
        acc_ax.set_ylim(0, 105)
        acc_ax.margins(x=0.08)
    acc_ax.set(title="Validation balanced accuracy (epoch 0 = before training)", xlabel="step",
               ylabel="balanced accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _confusion(plt, e: dict):
    m = np.asarray(e["confusion"])
    labels = e.get("labels") or [str(i) for i in range(len(m))]
    side = 2.2 + 1.1 * len(labels)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(m, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    totals = m.sum(axis=1, keepdims=True).clip(min=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]}\n{100 * m[i, j] / totals[i, 0]:.0f}%", ha="center", va="center", fontsize=10,
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="gold")
    bal = e.get("balanced_accuracy")
    ax.set_title(f"Test, epoch {e['epoch']}: {e['rows']} rows"
                 + (f", balanced accuracy {100 * bal:.1f}%" if bal is not None else "")
                 + "\n(% of each gold row)", fontsize=10)
    fig.tight_layout()
    return fig
