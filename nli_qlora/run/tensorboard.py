"""TensorBoard event files beside metrics.jsonl (`--report-to tensorboard`): a sink the metrics writer
forwards each record to, so the loop has one channel and metrics.jsonl stays the source.

Rank 0 only, like the metrics writer that owns it. torch.utils.tensorboard needs the `tensorboard`
package, imported only when a run asks for it (RunConfig.validate checks it is installed)."""

from __future__ import annotations

from pathlib import Path

STEP_SCALARS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
                "samples_per_s": "speed/samples_per_s", "tokens_per_s": "speed/tokens_per_s",
                "padding_fraction": "speed/padding_fraction", "gpu_mem_allocated_gb": "memory/gpu_allocated_gb",
                "gpu_mem_reserved_gb": "memory/gpu_reserved_gb", "gpu_mem_peak_gb": "memory/gpu_peak_gb",
                "rss_gb": "memory/rss_gb"}
EVAL_SCALARS = ("loss", "accuracy", "balanced_accuracy")  # as "{split}/{name}", e.g. validation/balanced_accuracy
LOG_DIR = "tensorboard"


class TensorBoardSink:
    def __init__(self, log_dir: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # lazy: pulls in tensorboard, only for --report-to

        # purge_step: a resume redoes the steps after its checkpoint; TensorBoard drops the old ones
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def write(self, record: dict) -> None:
        event = record["event"]
        if event == "step":
            for key, tag in STEP_SCALARS.items():
                if record.get(key) is not None:
                    self.writer.add_scalar(tag, record[key], record["step"], walltime=record["time"])
        elif event == "eval":
            for key in EVAL_SCALARS:
                if record.get(key) is not None:
                    self.writer.add_scalar(f"{record['split']}/{key}", record[key], record["step"],
                                           walltime=record["time"])
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def sinks_for(report_to: str, run_dir: Path, purge_step: int | None = None) -> list[TensorBoardSink]:
    """What the metrics writer forwards to for `--report-to` (none: nothing)."""
    return [TensorBoardSink(run_dir / LOG_DIR, purge_step)] if report_to == "tensorboard" else []
