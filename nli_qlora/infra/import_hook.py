"""One module's body run inside contexts, wherever it is imported from: how nli_qlora defers what a
library imports at its top for nothing nli_qlora uses (infra.deferred_compile, infra.deferred_import), or
changes what a module's body made or how (infra.import_structure_cache, infra.distribution_map)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from types import ModuleType


class BodyHook(importlib.abc.MetaPathFinder):
    """Finds `target` as Python's path finder does and wraps its loader's exec_module in each of
    `arounds(module)`, the first outermost."""

    def __init__(self, target: str, around: Callable[[ModuleType], AbstractContextManager]):
        self.target, self.arounds = target, [around]

    def find_spec(self, fullname, path, target=None):
        if fullname != self.target:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        run_body, arounds = spec.loader.exec_module, list(self.arounds)

        def exec_module(module):
            with ExitStack() as stack:
                for around in arounds:
                    stack.enter_context(around(module))
                run_body(module)

        spec.loader.exec_module = exec_module  # this module's own loader object: nothing else is touched
        return spec


def install(target: str, around: Callable[[ModuleType], AbstractContextManager]) -> None:
    """Adds `around` to the target's hook (once); a module imported before this is left as it is."""
    hook = next((f for f in sys.meta_path if isinstance(f, BodyHook) and f.target == target), None)
    if hook is None:
        sys.meta_path.insert(0, BodyHook(target, around))
    elif around not in hook.arounds:
        hook.arounds.append(around)
