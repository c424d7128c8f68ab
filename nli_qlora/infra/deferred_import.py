"""transformers imported without scikit-learn or scipy: what two of its modules import at their top for
functions nli_qlora never calls, deferred to the first call (DEFERRED).

- transformers 5.17 (the lent GPU's image; later versions import it where it is used) imports
  `sklearn.metrics.roc_curve` at the top of `transformers.generation.candidate_generator` whenever
  scikit-learn is installed, and every causal LM class imports that module: 1.6 s of the 7.4 s every
  command spent importing on the lent H200's host (scipy's statistics included; docs/benchmarks.md, issue
  14's tenth round), for assisted generation's adaptive threshold.
- transformers 5.17 and 5.24 alike import `scipy.optimize.linear_sum_assignment` at the top of five
  object detection losses whenever scipy is installed, and every model class imports them through
  `transformers.loss.loss_utils`, `modeling_utils`' loss table: 0.24-0.40 s on that host (issue 14's
  twelfth round), for the Hungarian matching of those losses. The stand-in serves the whole table's
  body, so every loss module in it gets the deferred function.

`install()` puts a finder on `sys.meta_path` (infra.import_hook) that runs each such module's body with
`sys.modules[deferred]` standing in for the real module: every name imported from it is a function
that imports the real module at its first call and calls it. Once the body has run, the stand-in
leaves `sys.modules`, so any other import of it gets the real module. Nothing changes where the package
is absent, where transformers imports it lazily itself (the body then never asks), or when the module
or its importer were imported before `install()`."""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import sys
from contextlib import contextmanager
from types import ModuleType

from nli_qlora.infra import import_hook

# the module whose body (and what it imports) runs with the stand-in: the module deferred
DEFERRED = {
    "transformers.generation.candidate_generator": "sklearn.metrics",
    "transformers.loss.loss_utils": "scipy.optimize",
}


def lazy_function(module: str, name: str):
    """A function that imports `module` at its first call and calls its `name` with the same arguments."""

    def stand_in(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    stand_in.__name__ = stand_in.__qualname__ = name
    stand_in.__doc__ = f"{module}.{name}, imported at its first call (nli_qlora.infra.deferred_import)"
    return stand_in


def stand_in_module(module: str) -> ModuleType:
    """A module whose every name (dunders aside) is lazy_function(module, that name)."""
    stub = ModuleType(module, f"{module}, imported at first use (nli_qlora.infra.deferred_import)")
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


@functools.cache
def _around(deferred: str):
    """One context per deferred module, so that installing twice defers once."""
    return lambda body: deferring(deferred)


def install(deferrals: dict[str, str] = DEFERRED) -> None:
    for target, deferred in deferrals.items():
        import_hook.install(target, _around(deferred))
