"""One module's body run inside a context, wherever it is imported from: how nli_qlora defers what a
library imports at its top for nothing nli_qlora uses (infra.deferred_compile, infra.deferred_sklearn), or
changes what a module's body made (infra.import_structure_cache)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import ModuleType


class BodyHook(importlib.abc.MetaPathFinder):
    """Finds `target` as Python's path finder does and wraps its loader's exec_module in `around(module)`."""

    def __init__(self, target: str, around: Callable[[ModuleType], AbstractContextManager]):
        self.target, self.around = target, around

    def find_spec(self, fullname, path, target=None):
        if fullname != self.target:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        run_body, around = spec.loader.exec_module, self.around

        def exec_module(module):
            with around(module):
                run_body(module)

        spec.loader.exec_module = exec_module  # this module's own loader object: nothing else is touched
        return spec


def install(target: str, around: Callable[[ModuleType], AbstractContextManager]) -> None:
    """Once per target; a module imported before this is left as it is."""
    if not any(isinstance(f, BodyHook) and f.target == target for f in sys.meta_path):
        sys.meta_path.insert(0, BodyHook(target, around))
