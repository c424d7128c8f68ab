"""transformers' model folders scanned once per process (infra.import_structure_cache), with the real
transformers, each case in a fresh interpreter: the second scan hits the first's results, and what
transformers builds from them is what its own uncached function computes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types

from nli_qlora.infra.import_structure_cache import unbounded

PROBE = textwrap.dedent("""
    import copy, json, os
    import nli_qlora, transformers
    from transformers import LlamaForCausalLM, PhiForCausalLM  # the second scan: transformers/models/__init__.py
    from transformers.utils import import_utils as iu
    info = iu.create_import_structure_from_path.cache_info()
    models = os.path.join(os.path.dirname(transformers.__file__), "models")
    folders = sum(1 for root, _, _ in os.walk(models) if os.path.basename(root) != "__pycache__")
    nested = iu.create_import_structure_from_path(models)
    before = copy.deepcopy(nested)
    cached = iu.define_import_structure.__wrapped__(models, prefix="models")
    cached_init = iu.define_import_structure.__wrapped__(os.path.join(models, "__init__.py"))
    iu.create_import_structure_from_path = iu.create_import_structure_from_path.__wrapped__  # transformers' own, uncached
    fresh = iu.define_import_structure.__wrapped__(models, prefix="models")
    fresh_init = iu.define_import_structure.__wrapped__(os.path.join(models, "__init__.py"))
    print(json.dumps({"maxsize": info.maxsize, "hits": info.hits, "folders": folders,
                      "same": cached == fresh and cached_init == fresh_init, "unchanged": nested == before,
                      "llama": LlamaForCausalLM.__name__}))
""")


def test_the_second_scan_of_the_model_folders_reads_the_first_and_builds_the_same_structure():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["maxsize"] is None
    assert got["hits"] >= got["folders"] - 20 > 400  # nearly every folder of the second scan came from the first
    assert got["same"] and got["unchanged"] and got["llama"] == "LlamaForCausalLM"


def test_a_function_that_is_absent_or_not_cached_is_left_as_it_is():
    def plain(path):
        return {}

    module = types.SimpleNamespace(create_import_structure_from_path=plain)
    assert unbounded(module) is False and module.create_import_structure_from_path is plain
    assert unbounded(types.SimpleNamespace()) is False
