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
    # peft 0.18+, wherever LoRA targets lm_head of a model with tied embeddings (SmolLM2): about merging the
    # adapter into the base or converting the model, which nli_qlora never does; training, checkpoints and
    # scoring all apply the adapter beside the shared weight, alike (seen under score --quiet on the GPU)
    warnings.filterwarnings("ignore", message="Model has `tie_word_embeddings=True` and a tied layer is part of the adapter")
    # inductor (--compile), once per process on a GPU with TensorFloat32 (sm_80+): advice to round float32
    # matmuls to TF32. The float32 adapters are float32 on purpose; --lora-compute-dtype bfloat16 is the
    # documented faster setting (seen under train --quiet --compile on the H200)
    warnings.filterwarnings("ignore", message="TensorFloat32 tensor cores for float32 matrix multiplication")
    quiet_paged_fallback()
