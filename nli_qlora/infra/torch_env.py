"""Environment variables that torch reads as numbers when it imports its compiler (torch._inductor,
torch._dynamo): transformers imports it in every command (its masking code imports dynamo, which
reads inductor's configuration), even with bitsandbytes' own compile deferred (infra.deferred_compile). One that is set but empty
or not a number fails that import deep inside transformers' lazy loader, reported as a model class
that cannot be imported (TORCHINDUCTOR_COMPILE_THREADS= gave "Could not import module
'BloomPreTrainedModel'"). Checked with the flags, so that the line names the variable."""

from __future__ import annotations

import os

# read with int() at import by torch 2.11-2.13 (torch/_inductor/config.py, torch/_dynamo/config.py)
NUMERIC = ("TORCHINDUCTOR_COMPILE_THREADS", "TORCHINDUCTOR_MIN_NUM_SPLIT", "TORCHINDUCTOR_FILE_LOCK_TIMEOUT",
           "TORCHINDUCTOR_CHUNKER_NUM_CHUNKS", "TORCHINDUCTOR_CPP_MIN_CHUNK_SIZE",
           "TORCHINDUCTOR_CPP_GEMM_MAX_K_SLICES", "TORCHINDUCTOR_ORIGAMI_TOPK", "AOTINDUCTOR_REPRO_LEVEL",
           "TORCHDYNAMO_REPRO_LEVEL")


def torch_environment_problem(environ=os.environ) -> str | None:
    """One line naming the first such variable that is not a whole number, or None."""
    for name in NUMERIC:
        value = environ.get(name)
        if value is None:
            continue
        try:
            int(value)
        except ValueError:
            return (f"environment variable {name}={value!r} is not a whole number: torch reads it as one when "
                    f"it imports its compiler, which every command does; unset it or give a number")
    return None
