"""--fused-rope: Liger-Kernel's Triton rotary embedding inside real transformers models gives
transformers' outputs and gradients (Llama with grouped key/value heads, Phi's partial rotation,
gradient checkpointing), only where it was asked for, and a capture runs it only for kernels
already loaded. On a CPU the kernel runs in Triton's interpreter (tests/conftest.py)."""

import copy
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from nli_qlora.config import RunConfig
from nli_qlora.infra.errors import UserError
from nli_qlora.model import fused_rope
from nli_qlora.model.fused_rope import computes_rotary, fuse_rope_, fused_rope_count, kernel_applies, reference
from tests.test_memory import _tiny_config, activation_bytes

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _model(family: str, dtype=torch.float32):
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    config = _tiny_config(family)
    config.attn_implementation = "sdpa"
    config.resid_pdrop = 0.0  # Phi's residual dropout off: the two models compared draw no masks
    return AutoModelForCausalLM.from_config(config).to(DEVICE, dtype).train()


def _outputs(model, ids):
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits
    logits.float().square().mean().backward()
    return logits.detach().float(), embeds.grad.float()


def _kernel_runs():
    return len(fused_rope._RAN_FORWARD), len(fused_rope._RAN_BACKWARD)


@pytest.mark.parametrize("family,checkpointing", [("llama", False), ("llama", True), ("phi", False)],
                         ids=["llama", "llama-checkpointing", "phi-partial"])
def test_fused_rope_computes_transformers_rotary_embedding(family, checkpointing):
    """Llama: 4 query and 2 key/value heads (SmolLM2's grouping); Phi: half of each head rotated."""
    plain = _model(family)
    fused = copy.deepcopy(plain)
    layers = plain.config.num_hidden_layers
    assert fuse_rope_(fused) == layers == fused_rope_count(fused)
    assert fused_rope_count(plain) == 0
    if checkpointing:
        for m in (plain, fused):
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ids = torch.randint(3, 500, (3, 19), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    fused_rope._RAN_FORWARD.clear(), fused_rope._RAN_BACKWARD.clear()
    (la, ga), (lb, gb) = _outputs(plain, ids), _outputs(fused, ids)
    assert _kernel_runs() == (1, 1)  # the kernel ran, forward and backward, once per shape
    torch.testing.assert_close(lb, la, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gb, ga, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(DEVICE.type != "cuda", reason="Triton's CPU interpreter mishandles bfloat16 (next test)")
def test_bfloat16_agrees_within_rounding():
    plain = _model("llama", torch.bfloat16)
    fused = copy.deepcopy(plain)
    fuse_rope_(fused)
    ids = torch.randint(3, 500, (2, 16), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    (la, ga), (lb, gb) = _outputs(plain, ids), _outputs(fused, ids)
    torch.testing.assert_close(lb, la, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(gb, ga, rtol=5e-2, atol=1e-3)


def test_bfloat16_keeps_transformers_code_in_the_interpreter():
    """The interpreter returned garbage for bfloat16 inputs (values of 1e35): there the model keeps
    transformers' rotary code, exactly."""
    if DEVICE.type == "cuda":
        pytest.skip("the interpreter runs on a CPU only")
    plain = _model("llama", torch.bfloat16)
    fused = copy.deepcopy(plain)
    fuse_rope_(fused)
    ids = torch.randint(3, 500, (2, 16), generator=torch.Generator().manual_seed(2))
    fused_rope._RAN_FORWARD.clear(), fused_rope._RAN_BACKWARD.clear()
    (la, ga), (lb, gb) = _outputs(plain, ids), _outputs(fused, ids)
    assert _kernel_runs() == (0, 0)
    assert torch.equal(la, lb) and torch.equal(ga, gb)


def test_only_marked_models_run_the_kernel_and_unmarking_restores_them():
    """The family's function is replaced for the process; another model of that family, and one
    unmarked again (the benchmarks reuse one model across cases), still run transformers' code."""
    fused, other = _model("llama"), _model("llama")
    fuse_rope_(fused)
    ids = torch.randint(3, 500, (2, 11), generator=torch.Generator().manual_seed(3)).to(DEVICE)
    fused_rope._RAN_FORWARD.clear(), fused_rope._RAN_BACKWARD.clear()
    with torch.no_grad():
        before = other(ids).logits
        assert _kernel_runs() == (0, 0)
        fused(ids)
        assert _kernel_runs() == (1, 0)
        fuse_rope_(fused, on=False)
        fused_rope._RAN_FORWARD.clear()
        fused(ids)
        assert _kernel_runs() == (0, 0) and fused_rope_count(fused) == 0
        assert not any("forward" in vars(m) for m in fused.modules())
        torch.testing.assert_close(other(ids).logits, before, rtol=0, atol=0)


def _interleaved(q, k, cos, sin, unsqueeze_dim=1):
    """GPT-J's rotation (pairs of neighbours), which the kernel does not compute."""
    def rot(x):
        return torch.stack((-x[..., 1::2], x[..., ::2]), -1).flatten(-2)
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return q * cos + rot(q) * sin, k * cos + rot(k) * sin


apply_rotary_pos_emb = _interleaved  # the global name the attention below calls, as transformers' modules do


class InterleavedAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))  # a device to read

    def forward(self, q, k, cos, sin):
        return apply_rotary_pos_emb(q, k, cos, sin)


def test_a_different_rotary_embedding_keeps_its_own_code():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama
    assert computes_rotary(getattr(llama, "nli_original", llama)) and computes_rotary(reference)
    assert not computes_rotary(_interleaved) and not computes_rotary(lambda q, k: (q, k))
    model = torch.nn.Sequential(InterleavedAttention()).to(DEVICE)
    assert fuse_rope_(model) == 0
    assert globals()["apply_rotary_pos_emb"] is _interleaved and "forward" not in vars(model[0])


def test_inside_a_capture_only_loaded_kernels_run():
    """Loading a Triton kernel is not allowed during a CUDA-graph capture: a specialization (here a
    new batch size) runs there only once its forward, and its backward if it will run, ran outside."""
    g = torch.Generator().manual_seed(4)
    q = torch.randn(5, 4, 16, 8, generator=g).to(DEVICE).requires_grad_(True)
    k = torch.randn(5, 2, 16, 8, generator=g).to(DEVICE).requires_grad_(True)
    angles = torch.rand(5, 16, 4, generator=g).to(DEVICE)
    cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()
    fused_rope._RAN_FORWARD.clear(), fused_rope._RAN_BACKWARD.clear()
    assert kernel_applies(q, k, cos, sin, capturing=False)  # outside a capture Triton compiles as needed
    assert not kernel_applies(q, k, cos, sin, capturing=True)
    with torch.no_grad():
        out = fused_rope._Rope.apply(q, k, cos, sin)
        assert kernel_applies(q, k, cos, sin, capturing=True)  # forward only: loaded
    assert not kernel_applies(q, k, cos, sin, capturing=True)  # with gradients: the backward is not
    out = fused_rope._Rope.apply(q.clone(), k.clone(), cos, sin)
    sum(o.sum() for o in out).backward()
    assert kernel_applies(q, k, cos, sin, capturing=True)
    assert not kernel_applies(q[:3], k[:3], cos[:3], sin[:3], capturing=True)  # another batch size
    assert not kernel_applies(q, k, cos.double(), sin.double(), capturing=False)  # mixed dtypes: transformers'


@pytest.mark.parametrize("family", ["llama", "phi"])
def test_activation_count_with_fused_rope(family):
    """The kernel keeps cos and sin (shared by every layer) and rotates copies of q and k in place:
    what autograd keeps is what the estimate already counts for transformers' rotary code. (float32 on
    a CPU: the interpreter runs the kernel only there.)"""
    dtype = "bfloat16" if DEVICE.type == "cuda" else "float32"
    cfg = RunConfig(model="x", lora_dropout=0.05, compute_dtype=dtype, lora_compute_dtype=dtype,
                    fused_rope=True, gradient_checkpointing=False)
    fused_rope._RAN_FORWARD.clear()
    measured, estimated, model = activation_bytes(_tiny_config(family), cfg, DEVICE.type)
    assert fused_rope_count(model) == 2 and _kernel_runs()[0] == 1
    assert estimated == pytest.approx(measured, rel=0.01)


def test_without_liger_kernel_the_flag_is_one_line_naming_the_package(monkeypatch):
    """Where the kernel can run; on a plain CPU nothing is marked and nothing is needed, so a checkpoint
    trained with the flag on a GPU scores on a CPU machine without liger-kernel."""
    fused_rope.liger_rope.cache_clear()
    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # as on a machine without it
    monkeypatch.setitem(sys.modules, "liger_kernel.ops", None)
    try:
        message = r"^--fused-rope: needs the liger-kernel package .*nli-qlora\[liger\]', or run with --no-fused-rope$"
        with pytest.raises(UserError, match=message):
            fuse_rope_(_model("llama"))
        with pytest.raises(UserError, match=message):  # before the model loads, not inside the thread
            fused_rope.warm_up_meanwhile(DEVICE, torch.float32)
        assert fused_rope._WARMING is None
        if DEVICE.type == "cpu":
            monkeypatch.setenv("TRITON_INTERPRET", "0")
            model = _model("llama")
            assert fuse_rope_(model) == 0 == fused_rope_count(model)
            assert fused_rope.warm_up_meanwhile(DEVICE, torch.float32) is None  # nor a thread
    finally:
        fused_rope.liger_rope.cache_clear()


def test_a_run_with_it_records_it_and_scores_its_checkpoint_to_its_own_predictions(tmp_path):
    """The tiny preset (Phi's partial rotation, float32: the interpreter runs the kernel on a CPU, one
    Python call per row and position, so the run is small): run_start counts the attention layers, the
    report says so, and the score command, which takes the setting from the checkpoint, gives every
    test row the run's own probabilities."""
    from nli_qlora.run.metrics import read_metrics
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--epochs", "1", "--fused-rope",
                           "--train-size", "16", "--validation-size", "8", "--test-size", "8", "--no-zero-shot-eval",
                           "--quiet", "--output-dir", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    start = read_metrics(out / "metrics.jsonl")[0]
    assert start["config"]["fused_rope"] is True
    layers = start["model"]["fused_ropes"]
    assert layers == 2 or DEVICE.type == "cuda" and layers > 0
    assert f"rotary embedding fused in {layers} attention layers" in (out / "report.md").read_text()
    run_rows = [json.loads(line) for line in (out / "predictions" / "test-epoch1.jsonl").read_text().splitlines()]
    rows_in = "".join(json.dumps({"premise": r["premise"], "hypothesis": r["hypothesis"]}) + "\n" for r in run_rows)
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.score", "--checkpoint", str(out), "--input", "-", "--quiet"],
                          input=rows_in, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    scored = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["probabilities"] for r in scored] == [r["probabilities"] for r in run_rows]


def test_compiled_layers_trace_transformers_rotary_code_and_evaluation_runs_the_kernel():
    """Under --compile the marked attention traces transformers' rotary code (inductor fuses it), with no
    graph break: the eager step's losses bit for bit and two graphs, as without the flag. Evaluation
    stays uncompiled and runs the kernel."""
    from torch._dynamo.utils import counters

    from nli_qlora.data.batches import Encoded
    from nli_qlora.model.compile_layers import compile_layers_, uncompiled
    from nli_qlora.training.evaluate import predict
    from nli_qlora.training.optim import trainer_for
    from tests.test_compile_layers import _losses, _shapes
    from tests.test_dequantize_base import _bundle
    import torch.fx.experimental._config as fx_config
    duck, limit = fx_config.use_duck_shape, torch._dynamo.config.recompile_limit  # compile_layers_ sets both
    torch._dynamo.reset(), counters.clear()
    try:
        batches = _shapes()
        cfg, plain = _bundle()
        cfg_c, compiled = _bundle(compile=True, fused_rope=True)
        assert fused_rope_count(compiled.model) == 2
        compile_layers_(compiled.model, backend="aot_eager")
        with uncompiled(unless=True):
            got = _losses(cfg_c, compiled, batches)
        assert got == _losses(cfg, plain, batches)
        assert counters["stats"]["unique_graphs"] == 2
        fused_rope._RAN_FORWARD.clear()
        rows = [Encoded(tuple(range(3, 3 + n)), n % 3, i) for i, n in enumerate([5, 9, 17])]
        scorers = [trainer_for(c, b.model, b.label_ids, 10)[0].scorer for c, b in ((cfg, plain), (cfg_c, compiled))]
        assert (predict(scorers[1], rows, 3, pad_id=0) == predict(scorers[0], rows, 3, pad_id=0)).all()
        assert _kernel_runs()[0] >= 1
    finally:
        torch._dynamo.reset()
        fx_config.use_duck_shape, torch._dynamo.config.recompile_limit = duck, limit


def test_a_deep_copy_of_a_marked_model_computes_with_its_own_weights():
    """The mark is a method bound to its module, so a copy's attention runs the copy's weights."""
    model = _model("llama")
    fuse_rope_(model)
    twin = copy.deepcopy(model)
    assert fused_rope_count(twin) == 2
    ids = torch.randint(3, 500, (2, 9), generator=torch.Generator().manual_seed(5)).to(DEVICE)
    with torch.no_grad():
        for p in twin.model.layers[0].self_attn.parameters():
            p.mul_(3)
        assert not torch.equal(twin(ids).logits, model(ids).logits)


def test_one_position_keeps_transformers_code():
    """With one position torch calls a tensor contiguous whatever its row stride, which the kernel
    reads: a gradient laid out otherwise came back wrong. One position runs transformers' code."""
    q, k = torch.randn(3, 4, 1, 8).to(DEVICE), torch.randn(3, 2, 1, 8).to(DEVICE)
    cos = sin = torch.randn(3, 1, 8).to(DEVICE)
    assert not kernel_applies(q, k, cos, sin, capturing=False)
    assert kernel_applies(q.expand(3, 4, 2, 8).contiguous(), k.expand(3, 2, 2, 8).contiguous(),
                          cos.expand(3, 2, 8).contiguous(), sin.expand(3, 2, 8).contiguous(), capturing=False)


def test_a_forward_put_in_place_before_marking_runs_inside_it_and_comes_back_after():
    """accelerate's hooks replace an instance's forward: marking wraps it, unmarking restores it, and
    a wrapper put on after marking is left alone (not dropped as if it were the mark)."""
    model = _model("llama")
    attn = model.model.layers[0].self_attn
    calls = []

    def hooked(*args, **kwargs):
        calls.append(1)
        return type(attn).forward(attn, *args, **kwargs)
    attn.forward = hooked
    fuse_rope_(model)
    ids = torch.randint(3, 500, (1, 6)).to(DEVICE)
    with torch.no_grad():
        model(ids)
    assert calls == [1] and fused_rope_count(model) == 2
    fuse_rope_(model, on=False)
    assert attn.forward is hooked and "forward" not in vars(model.model.layers[1].self_attn)
    fuse_rope_(model)
    wrapper = model.model.layers[1].self_attn.forward
    model.model.layers[1].self_attn.forward = lambda *a, **k: wrapper(*a, **k)  # wrapped after the mark
    fuse_rope_(model, on=False)
    assert "forward" in vars(model.model.layers[1].self_attn) and attn.forward is hooked


def test_the_first_launch_runs_on_a_thread_while_the_model_loads_and_ends_with_the_load():
    """load_bundle starts it; fuse_rope_, at the end of with_lora, joins it: no thread of ours launches
    kernels beside a run's evaluation, compilation or capture. It draws no random numbers (on its own,
    the generators are untouched; in a load, every weight, LoRA's included, is that of a load without it)."""
    from nli_qlora.config import preset
    from nli_qlora.model.bundle import load_bundle, with_lora
    before = _generators()
    assert fused_rope.warm_up_meanwhile(DEVICE, torch.bfloat16) is not None
    fused_rope.wait_warm_up()
    assert all(torch.equal(a, b) for a, b in zip(before, _generators()))
    cfg = dataclasses.replace(preset("tiny"), fused_rope=True)
    bundle = load_bundle(cfg, DEVICE)
    thread = fused_rope._WARMING
    assert thread is not None and thread.name == "nli_qlora-triton-warm-up"
    bundle = with_lora(bundle)
    assert fused_rope._WARMING is None and not thread.is_alive()
    assert thread.failed is None  # the kernel ran both ways
    assert fused_rope_count(bundle.model) == bundle.model.config.num_hidden_layers
    plain = with_lora(load_bundle(dataclasses.replace(cfg, fused_rope=False), DEVICE))
    assert fused_rope._WARMING is None
    ours, theirs = bundle.model.state_dict(), plain.model.state_dict()
    assert ours.keys() == theirs.keys() and any("lora_A" in name for name in ours)
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def _generators() -> list[torch.Tensor]:
    return [torch.get_rng_state()] + ([torch.cuda.get_rng_state()] if DEVICE.type == "cuda" else [])
