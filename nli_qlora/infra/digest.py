"""A file's SHA-256, read in 1 MiB blocks (hashlib.file_digest needs Python 3.11; 3.10 is supported):
what a checkpoint's checksums and the split cache's keys are made of."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
