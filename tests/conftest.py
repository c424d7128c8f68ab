"""Fixtures several test files share."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

# Each xdist worker computes on its share of the cores, and so do the runs it starts (they inherit it):
# two workers of torch's default (every core each) on a 2-core machine oversubscribed it, OpenMP's
# threads spinning against each other's; one thread each took three heavy test files from 134-146 s to
# 100-105 s (docs/benchmarks.md, issue 14's twenty-fourth round). Set before torch is imported, which
# reads it then; a value the user set is kept, and -n 0 (no worker count) keeps torch's default.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import torch  # noqa: E402

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
