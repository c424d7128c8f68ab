"""transformers' scan of its model folders, done once per process instead of twice.

transformers builds its lazy import structure by reading every file under `transformers/models` (about
560 folders, 1,700 files) in `utils.import_utils.create_import_structure_from_path`. The function
recurses folder by folder under an `lru_cache` of the default 128 entries. `import transformers` scans
`models` once, and importing any model class scans it again through `transformers/models/__init__.py`.
With 560 folders and 128 entries, the second scan finds none of the first's results: 1,122 misses and
no hit. That is 0.3-0.5 s of every command on a 2-core CPU (docs/benchmarks.md, issue 14's eleventh
round), in transformers 5.17 (the lent GPU's image) and 5.24 alike.

`install()` puts a finder on `sys.meta_path` (infra.import_hook) that, once that module's body has run,
gives the function the same cache without the 128-entry bound: the second scan reads its folders from
the first. The function and what it returns are transformers' own (the structures are read, never
changed, by their users: the same sharing transformers' bounded cache already does on a hit). Nothing
changes where the function is not there or not cached that way (another transformers), or when
transformers was imported before `install()`."""

from __future__ import annotations

import functools
from contextlib import contextmanager
from types import ModuleType

from nli_qlora.infra import import_hook

TARGET = "transformers.utils.import_utils"
FUNCTION = "create_import_structure_from_path"


def unbounded(module: ModuleType, name: str = FUNCTION) -> bool:
    """Re-cache `module.name` (an lru_cache'd function) without a size bound; False where it is not one."""
    cached = getattr(module, name, None)
    plain = getattr(cached, "__wrapped__", None)
    if plain is None or not hasattr(cached, "cache_info") or cached.cache_info().maxsize is None:
        return False
    setattr(module, name, functools.lru_cache(maxsize=None)(plain))  # its recursion looks the name up here
    return True


@contextmanager
def after_body(module: ModuleType):
    yield
    unbounded(module)


def install() -> None:
    import_hook.install(TARGET, after_body)
