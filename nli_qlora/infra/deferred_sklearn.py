"""transformers' generation helpers imported without scikit-learn: `sklearn.metrics` deferred to first use.

transformers 5.17 (the lent GPU's image; later versions import it where it is used) imports
`sklearn.metrics.roc_curve` at the top of `transformers.generation.candidate_generator` whenever
scikit-learn is installed, and every causal LM class imports that module. On the lent H200's host that
was 1.6 s of the 7.4 s every command spends importing (scipy's statistics included;
docs/benchmarks.md, issue 14's tenth round), for a function that only assisted generation's adaptive
threshold calls, which nli_qlora never runs.

`install()` puts a finder on `sys.meta_path` (infra.import_hook) that runs that one module's body with
`sys.modules["sklearn.metrics"]` standing in for the real module: every name imported from it is a
function that imports scikit-learn's own at its first call and calls it. Once the body has run, the
stand-in leaves `sys.modules`, so any other import of `sklearn.metrics` gets the real module. Nothing
changes where scikit-learn is absent, where transformers imports it lazily itself (the body then
never asks), or when scikit-learn's metrics or that module were imported before `install()`."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from contextlib import contextmanager
from types import ModuleType

from nli_qlora.infra import import_hook

TARGET = "transformers.generation.candidate_generator"
DEFERRED = "sklearn.metrics"


def lazy_function(module: str, name: str):
    """A function that imports `module` at its first call and calls its `name` with the same arguments."""

    def stand_in(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    stand_in.__name__ = stand_in.__qualname__ = name
    stand_in.__doc__ = f"{module}.{name}, imported at its first call (nli_qlora.infra.deferred_sklearn)"
    return stand_in


def stand_in_module(module: str) -> ModuleType:
    """A module whose every name (dunders aside) is lazy_function(module, that name)."""
    stub = ModuleType(module, f"{module}, imported at first use (nli_qlora.infra.deferred_sklearn)")
    stub.__spec__ = importlib.machinery.ModuleSpec(module, None)  # find_spec(module) answers "installed"
    stub.__getattr__ = lambda name: _lazy_attribute(module, name)  # PEP 562: names the stub lacks
    return stub


def _lazy_attribute(module: str, name: str):
    if name.startswith("__"):  # __path__, __file__...: the stand-in is a plain module, not the package's
        raise AttributeError(name)
    return lazy_function(module, name)


@contextmanager
def deferring(module: str):
    """`module` stands in `sys.modules` for the block when it is installed and not imported yet."""
    if module in sys.modules or not _installed(module.partition(".")[0]):
        yield
        return
    stub = sys.modules[module] = stand_in_module(module)
    try:
        yield
    finally:
        if sys.modules.get(module) is stub:
            del sys.modules[module]


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a half-imported or odd package: leave the import as it is
        return False


def install(target: str = TARGET, deferred: str = DEFERRED) -> None:
    import_hook.install(target, lambda body: deferring(deferred))
