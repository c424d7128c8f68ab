"""transformers 5.17 imported without reading the file list of every installed distribution.

At its top, transformers 5.17's `utils.import_utils` builds `importlib.metadata.packages_distributions()`,
the map from import names to the distributions that provide them, to look up package versions. For each
distribution without a `top_level.txt` that reads its RECORD and stats every file in it: 81
distributions and 27,070 files on the lent GPU's image: 1.0 s of every command there, 0.2 s on a 2-core
CPU (docs/benchmarks.md, issue 14's twelfth round). Later transformers (5.24 here) build the map
only when a version cannot be found under the package's own import name, which is nearly never.

`install()` gives 5.17 the same (infra.import_hook): while that module's body runs,
`packages_distributions()` returns a map built at its first read (LazyDistributions); once the body has
run, the module's `_is_package_available` asks for a version under the import name first, as 5.24 does,
and falls back to transformers' own function, which reads the map. Nothing changes on a transformers
that does not build the map at its top, or when it was imported before `install()`."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType

from nli_qlora.infra import import_hook

TARGET = "transformers.utils.import_utils"


class LazyDistributions(Mapping):
    """`build()`'s map, built at the first read."""

    def __init__(self, build: Callable[[], Mapping[str, list[str]]]):
        self._build, self._map = build, None

    @property
    def built(self) -> bool:
        return self._map is not None

    def _read(self) -> Mapping[str, list[str]]:
        if self._map is None:
            self._map = self._build()
        return self._map

    def __getitem__(self, name: str) -> list[str]:
        return self._read()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

    def __repr__(self) -> str:
        return f"LazyDistributions({self._map!r})" if self.built else "LazyDistributions(<not read yet>)"


def version_by_import_name_first(available: Callable) -> Callable:
    """transformers' `_is_package_available(pkg_name, return_version=False)`, trying the version under the
    import name before the distribution map, as transformers 5.24 does."""

    import importlib.metadata as metadata

    @functools.wraps(available)
    def _is_package_available(pkg_name: str, return_version: bool = False):
        if return_version and importlib.util.find_spec(pkg_name) is not None:
            try:
                return True, metadata.version(pkg_name)
            except metadata.PackageNotFoundError:
                pass  # distributed under another name (PIL, pillow): the map says which
        return available(pkg_name, return_version)

    return _is_package_available


@contextmanager
def lazy_map(module: ModuleType):
    import importlib.metadata as metadata  # here, not at nli_qlora's import: transformers imports it anyway

    real = metadata.packages_distributions
    metadata.packages_distributions = lambda: LazyDistributions(real)
    try:
        yield
    finally:
        metadata.packages_distributions = real
    if isinstance(getattr(module, "PACKAGE_DISTRIBUTION_MAPPING", None), LazyDistributions) and callable(
            getattr(module, "_is_package_available", None)):
        module._is_package_available = version_by_import_name_first(module._is_package_available)


def install(target: str = TARGET) -> None:
    import_hook.install(target, lazy_map)
