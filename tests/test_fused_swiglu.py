"""--fused-projections' gated MLPs: SiLU(gate) * up read from the one gate|up output by Liger-Kernel's
fused gate-up kernel (run here in Triton's interpreter, float32), the same function and gradients as
transformers' MLP over real peft layers; installed only where the MLP computes that formula."""

import pytest
import torch

from nli_qlora.model import fused_swiglu
from nli_qlora.model.fused_lora import fuse_lora_
from nli_qlora.model.fused_projections import fuse_projections_
from nli_qlora.model.fused_swiglu import fused_swiglu_count, reference, swiglu
from tests.test_fused_projections import FAST, _backward_nodes, _bundle, _Ops

pytestmark = pytest.mark.skipif(fused_swiglu.liger_swiglu() is None, reason="liger-kernel without the fused gate-up kernels")


def _llama(dropout: float = 0.0, dtype=torch.float32):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = get_peft_model(LlamaForCausalLM(config).to(dtype), LoraConfig(
        r=4, lora_dropout=dropout, init_lora_weights=False,  # B not zero: the adapters change the output
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    model.train()
    return model


def test_the_kernel_computes_silu_gate_times_up_and_its_gradient():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 5, 2 * 24, generator=g, requires_grad=True)
    assert fused_swiglu.kernel_applies(y, capturing=False)  # (the interpreter, float32)
    got = swiglu(y)
    assert "_SwiGLUBackward" in _backward_nodes(got)
    dc = torch.randn(got.shape, generator=g)
    (got_grad,) = torch.autograd.grad(got, y, dc)
    want = reference(y)
    (want_grad,) = torch.autograd.grad(want, y, dc)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6) and torch.allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6)


def test_inside_a_capture_only_kernels_already_loaded_run():
    """The CUDA-graph rule, forced here (no capture can run on a CPU): before its kernels have run outside
    a capture a call falls back to torch's ops; after the forward only, a pass without gradients may run
    it; after the backward too, a training pass."""
    g = torch.Generator().manual_seed(1)
    y = torch.randn(3, 2 * 40, generator=g, requires_grad=True)  # a width no other test uses: its own key
    assert fused_swiglu._key(y) not in fused_swiglu._RAN_FORWARD
    assert fused_swiglu.kernel_applies(y, capturing=False)  # outside a capture Triton compiles as needed
    assert not fused_swiglu.kernel_applies(y, capturing=True)
    with torch.no_grad():
        swiglu(y)  # the forward kernel, outside a capture
        assert fused_swiglu.kernel_applies(y, capturing=True)
    assert not fused_swiglu.kernel_applies(y, capturing=True)  # with gradients: the backward is not loaded
    swiglu(y).sum().backward()
    assert fused_swiglu.kernel_applies(y, capturing=True)
    assert not fused_swiglu.kernel_applies(y.to(torch.bfloat16), capturing=False)  # the interpreter: float32 only


def test_a_llama_mlp_reads_gate_and_up_from_the_group_and_trains_as_transformers_mlp():
    """The same logits and LoRA gradients as the unfused model (float32, within rounding), the MLP's
    backward one kernel node instead of SiLU, two multiplies and the gradients' concatenation."""
    x = torch.randint(3, 100, (2, 12))
    results = {}
    for fused in (False, True):
        model = _llama()
        fuse_lora_(model)
        if fused:
            fuse_projections_(model)
            assert fused_swiglu_count(model) == model.config.num_hidden_layers
        out = model(input_ids=x).logits
        loss = out.square().mean()
        with _Ops() as ops:
            grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
        results[fused] = out, grads, ops.names, _backward_nodes(out)
    (plain, plain_grads, plain_ops, _), (out, grads, ops, nodes) = results[False], results[True]
    assert torch.allclose(out, plain, rtol=1e-4, atol=1e-5)
    assert all(torch.allclose(g, p, rtol=1e-3, atol=1e-6) for g, p in zip(grads, plain_grads))
    assert nodes.count("_SwiGLUBackward") == 2 and "silu_backward" in plain_ops and "silu_backward" not in ops


def test_with_dropout_the_fused_mlp_draws_the_masks_the_group_draws():
    """Dropout on: the MLP's forward computes what its own forward computes from the same random state."""
    x = torch.randint(3, 100, (2, 12))
    model = _llama(dropout=0.2)
    fuse_lora_(model)
    fuse_projections_(model)
    mlp = model.base_model.model.model.layers[0].mlp
    h = torch.randn(2, 12, 64)
    outs = []
    for forward in (mlp.forward, lambda h: type(mlp).forward(mlp, h)):
        torch.manual_seed(5)
        outs.append(forward(h))
    assert torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    assert model(input_ids=x).logits.isfinite().all()


def test_phi_has_no_gated_mlp_and_an_mlp_of_another_formula_keeps_its_own_code():
    _, bundle = _bundle(**FAST)  # the tiny preset: Phi, fc1 -> gelu -> fc2
    fuse_projections_(bundle.model)
    assert fused_swiglu_count(bundle.model) == 0
    model = _llama()
    for layer in model.base_model.model.model.layers:
        layer.mlp.act_fn = torch.nn.GELU()  # not SiLU: the check on one layer finds another formula
    fuse_lora_(model)
    fuse_projections_(model)
    assert fused_swiglu_count(model) == 0


def test_the_benchmarks_turn_the_fused_mlp_off_with_the_fused_forwards():
    model = _llama()
    fuse_lora_(model)
    fuse_projections_(model)
    fuse_lora_(model, on=False)
    assert fused_swiglu_count(model) == 0
    assert "_SwiGLUBackward" not in _backward_nodes(model(input_ids=torch.randint(3, 100, (2, 12))).logits)


def test_it_is_installed_while_the_adapters_are_still_float32_over_a_bfloat16_base():
    """At load time the adapters are float32 over a bfloat16 base (the trainer seats bfloat16 copies
    later): the check of the MLP's formula must not need the group's plain case then."""
    model = _llama(dtype=torch.bfloat16)
    assert next(model.base_model.model.model.layers[0].mlp.gate_proj.lora_A.parameters()).dtype == torch.float32
    fuse_lora_(model)
    fuse_projections_(model)
    assert fused_swiglu_count(model) == model.config.num_hidden_layers


def test_compiled_layers_trace_the_fused_mlp_without_a_graph_break_and_compute_alike():
    """Under torch.compile the MLP's forward traces the group's plain ops and silu(gate) * up (inductor
    fuses them): dynamo meets no graph break, and the layers compute what they compute uncompiled."""
    from torch._dynamo.utils import counters

    import torch.fx.experimental._config as fx_config

    from nli_qlora.model.compile_layers import compile_layers_
    duck, limit = fx_config.use_duck_shape, torch._dynamo.config.recompile_limit  # compile_layers_ sets both
    x = torch.randint(3, 100, (2, 12))
    model = _llama()
    fuse_lora_(model)
    fuse_projections_(model)
    expected = model(input_ids=x).logits
    torch._dynamo.reset()
    counters.clear()
    try:
        compile_layers_(model, backend="aot_eager")
        got = model(input_ids=x).logits
        got.sum().backward()
        assert not counters["graph_break"]
    finally:
        torch._dynamo.reset()
        fx_config.use_duck_shape, torch._dynamo.config.recompile_limit = duck, limit
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
