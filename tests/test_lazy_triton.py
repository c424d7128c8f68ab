"""infra.lazy_triton: our kernels are defined once, at their first use, and not at all without Triton."""

from __future__ import annotations

import sys

import pytest

from nli_qlora.infra.lazy_triton import triton_kernel


def test_a_kernel_is_built_once_at_its_first_call():
    pytest.importorskip("triton")
    built = []

    @triton_kernel
    def kernel(triton, tl):
        """doc"""
        built.append((triton.__name__, tl.__name__))
        return "jitted"

    assert built == [], "nothing is built at definition"
    assert kernel() == "jitted" and kernel() == "jitted"
    assert built == [("triton", "triton.language")]
    assert kernel.__doc__ == "doc" and kernel.__name__ == "kernel"


def test_without_triton_there_is_no_kernel(monkeypatch):
    for name in [m for m in sys.modules if m == "triton" or m.startswith("triton.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "triton", None)  # what Python does for a package that is not installed

    @triton_kernel
    def kernel(triton, tl):
        raise AssertionError("not built without Triton")

    assert kernel() is None
