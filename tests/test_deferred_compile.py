"""bitsandbytes imported without torch's inductor (infra.deferred_compile), its functions unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from nli_qlora.infra.deferred_compile import deferred_compile, lazy_compile

PROBE = """
import json, sys
{first}
import bitsandbytes
from bitsandbytes.backends.default import ops
import torch
print(json.dumps({{"inductor": "torch._inductor.compile_fx" in sys.modules,
                  "decorated": getattr(ops._dequantize_4bit_compute, "__wrapped__", None) is not None,
                  "compile_restored": torch.compile.__module__ == "torch"}}))
"""


def _probe(first: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bitsandbytes_imported_after_nli_qlora_leaves_inductor_unimported():
    assert _probe("import nli_qlora") == {"inductor": False, "decorated": True, "compile_restored": True}


def test_bitsandbytes_imported_alone_imports_inductor_as_it_always_did():
    """The baseline the finder removes, so that the test above keeps meaning something if a later
    bitsandbytes stops importing inductor on its own."""
    assert _probe("") == {"inductor": True, "decorated": True, "compile_restored": True}


def test_a_deferred_function_compiles_at_its_first_call_with_the_arguments_given():
    calls = []

    def spy(model=None, **kwargs):
        calls.append(kwargs)
        return torch.compile(model, **kwargs)

    real = torch.compile
    with deferred_compile():
        assert torch.compile is not real
    assert torch.compile is real

    def double_plus_one(x):
        return x * 2 + 1

    lazy = lazy_compile(spy)(double_plus_one, backend="eager", dynamic=False)
    assert calls == []  # nothing compiled yet
    x = torch.arange(6.0)
    assert torch.equal(lazy(x), double_plus_one(x))
    assert torch.equal(lazy(x + 1), double_plus_one(x + 1))
    assert calls == [{"backend": "eager", "dynamic": False}]  # once, at the first call, as given
    assert lazy.__wrapped__ is double_plus_one

    decorated = lazy_compile(spy)(backend="eager")(double_plus_one)  # the @torch.compile(...) form
    assert torch.equal(decorated(x), double_plus_one(x)) and len(calls) == 2


def test_a_module_is_compiled_at_once_as_torch_would():
    module = torch.nn.Linear(2, 2)
    compiled = lazy_compile(torch.compile)(module, backend="eager")
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
