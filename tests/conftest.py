"""Fixtures several test files share."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # --fused-rope's Triton kernel (Liger-Kernel's) runs on a CPU only in Triton's interpreter, which
    # Triton reads when a kernel is defined: set before anything imports liger_kernel, and inherited by
    # the runs the tests start, so the CPU tests run the kernel itself rather than skipping its path
    os.environ.setdefault("TRITON_INTERPRET", "1")


@contextmanager
def mounted_tmpfs(folder: Path, size: str):
    """A small tmpfs of our own at `folder` (root only; the test is skipped where mounting is not
    permitted), unmounted afterwards: full and read-only disks made for real."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
