"""Library quieting: our own views report progress, so the libraries' bars and chatter are noise.

One function for every command (train, dry run, score, tune, the peer script, the benchmarks)."""

from __future__ import annotations

import warnings


def quiet_paged_fallback() -> None:
    """bitsandbytes warns at every step that paged optimizers fall back on CPU; the optimizer
    reports that once itself (training.optim.build_optimizer)."""
    warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU.*")


def quiet_libraries() -> None:
    from transformers.utils import logging as hf_logging  # lazy: transformers takes seconds to import
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*")
    quiet_paged_fallback()
