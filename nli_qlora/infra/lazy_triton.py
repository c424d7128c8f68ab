"""Triton kernels defined at their first use, not at import: Triton's import costs start-up on every command,
and a machine without it (a CPU install without torch's CUDA build) still runs everything else."""

from __future__ import annotations

import functools
from typing import Callable


def triton_kernel(build: Callable):
    """`build(triton, tl)` once, at the first call of the function it decorates, which returns what `build`
    returns (the jitted kernels, compiled at their first launch), or None where Triton cannot be imported."""

    @functools.cache
    @functools.wraps(build)
    def kernel():
        try:
            import triton
            import triton.language as tl
        except ImportError:
            return None
        return build(triton, tl)

    return kernel
