"""transformers 5.17's map of installed distributions built only when a version needs it
(infra.distribution_map). A module written here has 5.17's shape (its two version functions, verbatim),
so the hook's work is checked on every transformers; the last test runs the real one, each case in a
fresh interpreter, and compares each answer with transformers' own function."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap

from nli_qlora.infra.distribution_map import LazyDistributions, version_by_import_name_first

# transformers 5.17.0, src/transformers/utils/import_utils.py (Apache-2.0): the map at the top, and the
# two functions that read it
SHAPE_517 = textwrap.dedent('''
    import importlib.metadata
    import importlib.util

    PACKAGE_DISTRIBUTION_MAPPING = importlib.metadata.packages_distributions()


    def _candidate_distribution_names(pkg_name):
        normalized_pkg_name = pkg_name.replace("_", "-")
        distributions = PACKAGE_DISTRIBUTION_MAPPING.get(pkg_name, [])
        candidates = [
            *(name for name in (normalized_pkg_name, pkg_name) if name in distributions),
            *distributions,
            normalized_pkg_name,
            pkg_name,
        ]
        return list(dict.fromkeys(candidates))


    def _is_package_available(pkg_name, return_version=False):
        spec = importlib.util.find_spec(pkg_name)
        package_exists = spec is not None
        package_version = "N/A"
        if package_exists and return_version:
            for distribution_name in _candidate_distribution_names(pkg_name):
                try:
                    package_version = importlib.metadata.version(distribution_name)
                    break
                except importlib.metadata.PackageNotFoundError:
                    continue
            else:
                package = importlib.import_module(pkg_name)
                package_version = getattr(package, "__version__", "N/A")
                if package_version == "N/A" and getattr(package, "__file__", None) is None:
                    package_exists = False
        if return_version:
            return package_exists, package_version
        else:
            return package_exists, None
''')

# numpy and torch under their import names; PIL is pillow's, yaml PyYAML's: the map says so
NAMES = ["torch", "numpy", "safetensors", "PIL", "yaml", "no_such_package_here"]

PROBE = textwrap.dedent('''
    import importlib.metadata, json, sys
    real, built = importlib.metadata.packages_distributions, []
    def counting():
        built.append(1)
        return real()
    importlib.metadata.packages_distributions = counting
    import nli_qlora
    from nli_qlora.infra import distribution_map
    distribution_map.install("{target}")
    {imports}
    import {target} as iu
    out = {{"built_at_import": len(built), "hooked": hasattr(iu._is_package_available, "__wrapped__")}}
    names = {names!r}
    for name in names[:3]:  # each found under its import name
        iu._is_package_available(name, return_version=True)
    out["built_by_import_names"] = len(built)
    out["answers"] = [list(iu._is_package_available(n, return_version=True)) for n in names]
    own = getattr(iu._is_package_available, "__wrapped__", iu._is_package_available)
    out["own"] = [list(own(n, return_version=True)) for n in names]
    out["without_version"] = [list(iu._is_package_available(n)) for n in names] == [list(own(n)) for n in names]
    print(json.dumps(out))
''')


def _probe(cwd, target: str, imports: str = "") -> dict:
    code = PROBE.format(target=target, imports=imports, names=NAMES)
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_map_is_built_at_its_first_read_only():
    calls = []
    lazy = LazyDistributions(lambda: calls.append(1) or {"PIL": ["pillow"]})
    assert calls == [] and not lazy.built and "not read" in repr(lazy)
    assert lazy.get("PIL", []) == ["pillow"] and lazy.get("numpy", []) == []
    assert dict(lazy) == {"PIL": ["pillow"]} and len(lazy) == 1 and "PIL" in lazy
    assert calls == [1]  # once


def test_a_version_under_the_import_name_does_not_ask_transformers_function():
    asked = []

    def available(pkg_name, return_version=False):
        asked.append(pkg_name)
        return True, "from the map"

    looked_up = version_by_import_name_first(available)
    assert looked_up("numpy", return_version=True) == (True, importlib.metadata.version("numpy"))
    assert asked == []
    assert looked_up("PIL", return_version=True) == (True, "from the map")  # pillow's: not under "PIL"
    assert looked_up("numpy") == (True, "from the map")  # without a version: transformers' own
    assert asked == ["PIL", "numpy"] and looked_up.__wrapped__ is available


def test_a_module_of_transformers_5_17s_shape_imports_without_the_map_and_answers_the_same(tmp_path):
    (tmp_path / "shape517").mkdir()
    (tmp_path / "shape517" / "__init__.py").write_text("")
    (tmp_path / "shape517" / "import_utils.py").write_text(SHAPE_517)
    got = _probe(tmp_path, "shape517.import_utils")
    assert got["hooked"] and got["built_at_import"] == 0 and got["built_by_import_names"] == 0
    assert got["answers"] == got["own"] and got["without_version"]
    assert got["answers"][3][0] and got["answers"][3][1] == importlib.metadata.version("pillow")
    assert got["answers"][5] == [False, "N/A"]


def test_transformers_imports_its_model_classes_without_the_map_and_answers_the_same():
    """On transformers 5.17 (the lent GPU's image) this module's work; on later ones (5.24 here),
    transformers' own: either way no command pays for the map."""
    got = _probe(None, "transformers.utils.import_utils",
                 "import transformers, peft; from transformers import LlamaForCausalLM, PhiForCausalLM")
    assert got["built_at_import"] == 0 and got["built_by_import_names"] == 0
    assert got["answers"] == got["own"] and got["without_version"]
