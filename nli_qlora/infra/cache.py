"""The cache root: converted GGUF models, the built-in model and tokenized prompts live below it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("NLI_QLORA_CACHE") or Path.home() / ".cache" / "nli_qlora"
    return Path(root)
