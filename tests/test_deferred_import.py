"""A module's top-level import of a package deferred to first use (infra.deferred_import): on
transformers 5.17 with scikit-learn installed, `transformers.generation.candidate_generator` imports
`sklearn.metrics` at its top (1.6 s on the lent GPU's host), and object detection's losses import
`scipy.optimize` (0.24-0.40 s there). The mechanism is checked on a real package written here, which
imports a real standard-library module the way transformers imports scikit-learn's, each case in a
fresh interpreter; the last tests check transformers itself."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

GEN = textwrap.dedent("""
    import importlib.util
    if importlib.util.find_spec("{ask}") is not None:  # as transformers asks is_sklearn_available()
        from {module} import {names}
""")

PROBE = textwrap.dedent("""
    import json, sys
    {before}
    from nli_qlora.infra import deferred_import
    deferred_import.install({{"probe_pkg.gen": "{module}"}})
    import probe_pkg.gen as gen
    out = {{"imported_with_body": "{module}" in sys.modules, "names": [n for n in {names!r}.split(", ") if hasattr(gen, n)]}}
    if out["names"]:
        first = getattr(gen, out["names"][0])
        out["value"] = first({args})
        real = sys.modules.get("{module}")
        out["real_after_call"] = real is not None and hasattr(real, "__file__")
        if real is not None:
            out["same_as_real"] = out["value"] == getattr(real, out["names"][0])({args})
    print(json.dumps(out))
""")


COLORSYS = dict(ask="colorsys", module="colorsys", names="rgb_to_hsv, hsv_to_rgb", args="0.2, 0.4, 0.6")
# transformers' shape: the package is asked about, a submodule of it imported from
EMAIL_UTILS = dict(ask="email", module="email.utils", names="formataddr, parseaddr", args="('A', 'a@b.c')")


def _probe(tmp_path, case: dict = COLORSYS, before: str = "") -> dict:
    (tmp_path / "probe_pkg").mkdir(exist_ok=True)
    (tmp_path / "probe_pkg" / "__init__.py").write_text("")
    (tmp_path / "probe_pkg" / "gen.py").write_text(GEN.format(**case))
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before, **case)], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", [COLORSYS, EMAIL_UTILS], ids=["module", "submodule"])
def test_the_module_imports_without_the_package_and_each_name_imports_it_at_first_call(tmp_path, case):
    got = _probe(tmp_path, case)
    assert got["imported_with_body"] is False  # the module ran its body without importing it
    assert got["names"] == case["names"].split(", ")
    assert got["real_after_call"] and got["same_as_real"]  # the first call imported the real module


def test_a_package_imported_before_is_left_to_the_module_as_it_is(tmp_path):
    got = _probe(tmp_path, before="import colorsys")
    assert got["imported_with_body"] and got["same_as_real"]


def test_a_package_that_is_not_installed_changes_nothing(tmp_path):
    got = _probe(tmp_path, dict(COLORSYS, ask="no_such_package_here", module="no_such_package_here"))
    assert got == {"imported_with_body": False, "names": []}


def test_transformers_model_classes_import_without_scikit_learn():
    """Trivially true where scikit-learn is absent or transformers imports it lazily (5.24 does); on
    transformers 5.17 with scikit-learn installed (the lent GPU's image) it is this module's work."""
    code = ("import sys, nli_qlora; from transformers import LlamaForCausalLM, PhiForCausalLM; "
            "import transformers.generation.candidate_generator; print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_transformers_model_classes_import_without_scipy_optimize_and_the_losses_still_match():
    """Object detection's losses find the deferred function, and it gives scipy's answer."""
    pytest.importorskip("scipy.optimize")
    code = textwrap.dedent("""
        import json, sys, nli_qlora
        from transformers import LlamaForCausalLM, PhiForCausalLM
        from transformers.loss import loss_for_object_detection as detection
        before = "scipy.optimize" in sys.modules
        rows, cols = detection.linear_sum_assignment([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
        from scipy.optimize import linear_sum_assignment
        real = linear_sum_assignment([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
        print(json.dumps({"before": before, "same": [rows.tolist(), cols.tolist()] == [a.tolist() for a in real]}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"before": False, "same": True}


def test_installing_twice_defers_once():
    from nli_qlora.infra import deferred_import, import_hook

    deferred_import.install()
    deferred_import.install()
    hooks = [f for f in sys.meta_path if isinstance(f, import_hook.BodyHook) and f.target in deferred_import.DEFERRED]
    assert sorted(h.target for h in hooks) == sorted(deferred_import.DEFERRED)
    assert all(len(h.arounds) == 1 for h in hooks)
