"""bitsandbytes' import without torch's inductor: its `torch.compile` decorations deferred to first call.

bitsandbytes 0.50's fallback backend (`bitsandbytes.backends.default.ops`) decorates four functions
with `torch.compile` as it is imported. Compiling is lazy anyway (it happens at a function's first
call), but the decoration itself imports `torch._inductor`: about a second on a 2-core CPU and more on
the lent GPU host's slower imports, in every command that loads a model (docs/benchmarks.md, issue 14).
On CUDA none of the four ever runs (bitsandbytes registers CUDA kernels for those ops), so the import
buys nothing there; on a CPU the first call still compiles them, as before.

`install()` puts a finder on `sys.meta_path` (infra.import_hook) that, when that one module is imported
(by peft, by transformers or by us), runs its body with `torch.compile` swapped for `lazy_compile`: the real
`torch.compile` is called at each function's first call, with the same arguments. Anything other
than a plain function (an nn.Module, a method) is compiled at once, as torch would. Nothing changes
when the module is absent (another bitsandbytes) or was imported before `install()`."""

from __future__ import annotations

import functools
import types
from contextlib import contextmanager

from nli_qlora.infra import import_hook

TARGET = "bitsandbytes.backends.default.ops"


def lazy_compile(real):
    """A stand-in for `real` (torch.compile) that compiles a plain function at its first call."""

    def compile_(model=None, **kwargs):
        if model is None:  # used as @torch.compile(**kwargs)
            return lambda fn: compile_(fn, **kwargs)
        if not isinstance(model, types.FunctionType):
            return real(model, **kwargs)
        compiled = None

        @functools.wraps(model)
        def first_call_compiles(*args, **kw):
            nonlocal compiled
            if compiled is None:
                compiled = real(model, **kwargs)
            return compiled(*args, **kw)

        return first_call_compiles

    return compile_


@contextmanager
def deferred_compile(module=None):
    import torch

    real = torch.compile
    torch.compile = lazy_compile(real)
    try:
        yield
    finally:
        torch.compile = real


def install() -> None:
    import_hook.install(TARGET, deferred_compile)
