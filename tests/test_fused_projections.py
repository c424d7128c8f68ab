"""--fused-projections: the adapted linears that read one input run as one grouped update, which computes
peft's function and gradients (real peft, real bitsandbytes 4-bit layers dequantized, the loop's own
step), draws each member's own dropout mask, and is refused where it cannot apply."""

import dataclasses
import subprocess
import sys

import pytest
import torch

from nli_qlora.config import preset
from nli_qlora.infra.errors import UserError
from nli_qlora.model.bundle import load_bundle, with_lora
from nli_qlora.model.fused_lora import fuse_lora_
from nli_qlora.model.fused_projections import GroupedLora, fuse_projections_, groups_of
from tests.test_dequantize_base import _losses

CPU = torch.device("cpu")
FAST = {"dequantize_base": True, "fused_lora": True}


def _bundle(**changes):
    cfg = dataclasses.replace(preset("tiny"), **changes)
    bundle = with_lora(load_bundle(cfg, CPU))
    bundle.model.train()
    return cfg, bundle


def _operands(p: float, widths=(5, 3, 3), n_in=6, r=2, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *shape, grad=True: torch.randn(*shape, dtype=torch.float64, generator=g, requires_grad=grad)
    x = make(2, 4, n_in)
    weight, b = make(sum(widths), n_in, grad=False), (make(sum(widths), grad=False) if bias else None)
    a = [make(r, n_in) for _ in widths]
    bb = [make(w, r) for w in widths]
    return x, weight, b, a, bb


def _reference(x, weight, bias, a, b, p, scales, widths):
    """peft's arithmetic member by member, dropout from the same single call the grouped update makes."""
    x2 = x.reshape(-1, x.shape[-1])
    xd = torch.native_dropout(x2.expand(len(widths), *x2.shape), p, True)[0] if p > 0 else x2.expand(len(widths), *x2.shape)
    base = torch.nn.functional.linear(x2, weight, bias)
    cols, offset = [], 0
    for i, w in enumerate(widths):
        cols.append(base[:, offset:offset + w] + scales[i] * (xd[i] @ a[i].t()) @ b[i].t())
        offset += w
    return torch.cat(cols, dim=1).view(*x.shape[:-1], -1)


def _backward_nodes(out: torch.Tensor) -> list[str]:
    """The type names of every node of out's autograd graph, each node once."""
    names, stack, done = [], [out.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in done:
            continue
        done.add(fn)
        names.append(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    return names


def test_the_grouped_update_has_the_gradients_of_its_formula_without_dropout():
    widths, scales = (5, 3, 3), (2.0, 2.0, 0.5)
    for bias in (True, False):
        x, weight, b, a, bb = _operands(0.0, widths, bias=bias)
        f = lambda x, *ab: GroupedLora.apply(x, weight, b, 0.0, scales, widths, None, *ab)
        assert torch.autograd.gradcheck(f, (x, *a, *bb))
        assert torch.allclose(f(x, *a, *bb), _reference(x, weight, b, a, bb, 0.0, scales, widths))


def test_with_dropout_it_computes_and_differentiates_what_its_masks_give():
    """The same seed, the same single dropout call: the grouped update and plain autograd over peft's
    member-by-member arithmetic agree in value and in every gradient."""
    widths, scales, p = (5, 3, 3), (2.0, 2.0, 2.0), 0.3
    x, weight, b, a, bb = _operands(p, widths)
    torch.manual_seed(7)
    got = GroupedLora.apply(x, weight, b, p, scales, widths, None, *a, *bb)
    got_grads = torch.autograd.grad(got.square().sum(), (x, *a, *bb))
    torch.manual_seed(7)
    expected = _reference(x, weight, b, a, bb, p, scales, widths)
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, *a, *bb))
    assert torch.allclose(got, expected)
    for g, e in zip(got_grads, expected_grads):
        assert torch.allclose(g, e)


@pytest.mark.parametrize("widths, scales", [((5, 3, 3), (2.0, 2.0, 2.0)),   # Llama's q, then k and v as one run
                                             ((4, 4, 4, 7), (2.0, 2.0, 2.0, 2.0)),  # Phi's q, k, v, then fc1
                                             ((4, 4), (2.0, 2.0)),  # gate and up
                                             ((4, 4, 4), (2.0, 0.5, 0.5))])  # a scale of its own ends a run
def test_neighbours_of_one_width_compute_their_b_products_as_one_batched_matmul(widths, scales):
    """A run of equal neighbours takes one batched matmul over a strided view of its columns: the same
    values and every gradient as the formula, with and without dropout; its B gradients are whole tensors
    (contiguous), as the flat buffer's multi-tensor add needs them."""
    from nli_qlora.model.fused_projections import _runs
    assert sum(k for _, k, _ in _runs(widths, scales)) == len(widths)
    assert any(k > 1 for _, k, _ in _runs(widths, scales))
    x, weight, b, a, bb = _operands(0.0, widths)
    f = lambda x, *ab: GroupedLora.apply(x, weight, b, 0.0, scales, widths, None, *ab)
    assert torch.autograd.gradcheck(f, (x, *a, *bb))
    assert torch.allclose(f(x, *a, *bb), _reference(x, weight, b, a, bb, 0.0, scales, widths))
    torch.manual_seed(3)
    got = GroupedLora.apply(x, weight, b, 0.3, scales, widths, None, *a, *bb)
    got_grads = torch.autograd.grad(got.square().sum(), (x, *a, *bb))
    torch.manual_seed(3)
    expected = _reference(x, weight, b, a, bb, 0.3, scales, widths)
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, *a, *bb))
    assert torch.allclose(got, expected)
    for g, e in zip(got_grads, expected_grads):
        assert torch.allclose(g, e) and g.is_contiguous()


def test_a_run_of_neighbours_takes_fewer_matmuls_forward_and_backward():
    """Phi's group (q, k, v of one width, then fc1): 11 matmuls forward and backward, not one per member and
    product (17); the count is what the step's time follows at batch 8."""
    widths = (4, 4, 4, 7)
    x, weight, b, a, bb = _operands(0.1, widths)
    with _Ops() as ops:
        out = GroupedLora.apply(x, weight, b, 0.1, (2.0,) * 4, widths, None, *a, *bb)
        torch.autograd.grad(out.sum(), (x, *a, *bb))
    assert sum(n in ("mm", "addmm", "addmm_", "bmm", "baddbmm", "baddbmm_") for n in ops.names) == 11


def test_each_member_draws_a_mask_of_its_own():
    """Two members with the same adapter weights would give the same update under one shared mask."""
    widths, p = (4, 4), 0.5
    x, weight, b, a, bb = _operands(p, widths, bias=False)
    a[1], bb[1] = a[0], bb[0]
    with torch.no_grad():
        out = GroupedLora.apply(x, weight, None, p, (1.0, 1.0), widths, None, *a, *bb)
        base = torch.nn.functional.linear(x, weight)
    first, second = (out - base).split(widths, dim=-1)
    assert not torch.allclose(first, second)


def test_phi_and_llama_layers_group_their_shared_input_linears():
    _, bundle = _bundle(**FAST)  # the tiny preset: a Phi model, every linear adapted
    groups = groups_of(bundle.model)
    assert len(groups) == bundle.model.config.num_hidden_layers and {len(g) for g in groups} == {4}  # q, k, v, fc1
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    llama = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                     "gate_proj", "up_proj", "o_proj"]))
    sizes = sorted(len(g) for g in groups_of(llama))
    assert sizes == [2, 2, 3, 3]  # per layer: q k v, and gate up; o_proj reads another input
    assert sorted(len(g) for g in groups_of(llama, alone=True)) == [1, 1, 2, 2, 3, 3]  # o_proj: a group of one


def test_every_group_computes_once_and_the_members_take_its_outputs():
    _, bundle = _bundle(**FAST)
    reference = {n: p.detach().clone() for n, p in bundle.model.named_parameters()}
    x = torch.randint(3, 100, (2, 12))
    expected = bundle.model(input_ids=x).logits
    groups = groups_of(bundle.model, alone=True)  # q k v fc1, and dense and fc2 alone
    assert len(groups) == 3 * len(groups_of(bundle.model))
    assert fuse_projections_(bundle.model) == len(groups)
    for n, p in bundle.model.named_parameters():  # the bases are views of one tensor now, with the same values
        assert torch.equal(p, reference[n]), n
    out = bundle.model(input_ids=x).logits
    assert _backward_nodes(out).count("GroupedLoraBackward") == len(groups)
    assert torch.equal(out, expected)  # float32 on a CPU, dropout off in the tiny preset: the same values
    assert all(g[0]._nli_group[0].pending is None for g in groups)  # nothing left behind


@pytest.mark.parametrize("mode", ["fast", "eager"])
def test_training_grouped_takes_the_fused_steps_and_with_dropout_trains_alike(mode):
    for dropout, exact in ((0.0, True), (0.1, False)):
        cfg, plain = _bundle(step_mode=mode, lora_dropout=dropout, **FAST)
        cfg_g, grouped = _bundle(step_mode=mode, lora_dropout=dropout, fused_projections=True, **FAST)
        expected, got = _losses(cfg, plain), _losses(cfg_g, grouped)
        if exact:  # float32 rounding apart: the input gradients of the members are summed in another order
            assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
        else:  # other masks: the first step's loss (before any update) is the same, then they drift a little
            assert got[0] == expected[0] and got == pytest.approx(expected, rel=2e-2)
        assert got[-1] < got[0]


def test_it_is_refused_without_the_fused_update_or_the_dequantized_base():
    for changes, missing in (({"dequantize_base": True}, "--fused-lora"), ({"fused_lora": True}, "--dequantize-base"),
                             ({}, "--fused-lora and --dequantize-base")):
        with pytest.raises(UserError, match=f"--fused-projections: needs {missing}:"):
            dataclasses.replace(preset("tiny"), fused_projections=True, **changes).validate()


def test_without_shared_input_targets_it_is_one_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--dequantize-base",
                           "--fused-lora", "--fused-projections", "--target-modules", "q_proj", "dense",
                           "--output-dir", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "--fused-projections: found no adapted linears that share an input" in last and "Traceback" not in proc.stderr


def test_a_grouped_run_scores_its_checkpoint_to_its_own_predictions(tmp_path):
    """The checkpoint carries the setting: the score command groups as the run did (dropout on in training)."""
    from tests.test_lora_compute_dtype import scores_like_the_run
    cfg = scores_like_the_run(tmp_path, "--dequantize-base", "--fused-lora", "--fused-projections", "--lora-dropout", "0.1")
    assert cfg["fused_projections"] is True
    assert "shared-input linears fused" in (tmp_path / "run" / "report.md").read_text()  # the report says how it trained


def test_the_benchmarks_can_turn_it_off_between_cases():
    _, bundle = _bundle(**FAST)
    fuse_projections_(bundle.model)
    fuse_lora_(bundle.model, on=False)  # peft's forward back on every adapted layer
    out = bundle.model(input_ids=torch.randint(3, 100, (2, 12))).logits
    assert "GroupedLoraBackward" not in _backward_nodes(out)


def test_compiled_layers_trace_the_grouped_update_in_one_graph_a_shape():
    """Under torch.compile the group runs as plain differentiable ops (grouped_ops): dynamo traces a
    decoder layer without graph breaks, and the steps are the eager grouped ones within float32 rounding
    (real dynamo and AOT autograd; inductor's kernels are scripts/gpu_smoke.sh's)."""
    from torch._dynamo.utils import counters

    from nli_qlora.model.compile_layers import compile_layers_
    from tests.test_compile_layers import _losses as compiled_losses
    from tests.test_compile_layers import _shapes
    import torch.fx.experimental._config as fx_config
    duck, limit = fx_config.use_duck_shape, torch._dynamo.config.recompile_limit  # compile_layers_ sets both
    torch._dynamo.reset()
    counters.clear()
    losses = {}
    try:
        for compiled in (False, True):
            cfg, bundle = _bundle(fused_projections=True, **FAST)
            if compiled:
                compile_layers_(bundle.model, backend="aot_eager", shapes=4)
            losses[compiled] = compiled_losses(cfg, bundle, _shapes())
        assert not counters["graph_break"]
        assert counters["stats"]["unique_graphs"] == 6  # two a shape (the first layer's, the others'), three shapes
    finally:
        torch._dynamo.reset()
        fx_config.use_duck_shape, torch._dynamo.config.recompile_limit = duck, limit
    assert losses[True] == pytest.approx(losses[False], rel=1e-5, abs=1e-6)


def test_gradient_checkpointing_recomputes_the_groups_with_their_masks():
    """Non-reentrant checkpointing runs each layer's forward again in the backward pass: the group's first
    member recomputes it, the others take its outputs, and the saved RNG state gives the same masks."""
    from nli_qlora.model.bundle import enable_checkpointing
    losses = {}
    for checkpointing in (False, True):
        cfg, bundle = _bundle(lora_dropout=0.1, fused_projections=True, gradient_checkpointing=checkpointing, **FAST)
        if checkpointing:
            enable_checkpointing(bundle.model)
        losses[checkpointing] = _losses(cfg, bundle)
    assert losses[True] == pytest.approx(losses[False], rel=1e-5, abs=1e-6)


class _Ops:
    """The aten ops dispatched inside, by name (views included)."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        names = self.names = []

        class Record(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                names.append(func.overloadpacket.__name__)
                return func(*args, **(kwargs or {}))

        self.mode = Record()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)


def test_a_linear_alone_is_a_group_of_one_whose_input_gradient_is_one_matmul():
    """o_proj, down_proj (Phi's dense, fc2) read no shared input; as a group of one the adapter's input
    gradient rides in the base's input-gradient matmul (addmm's bias), where --fused-lora's layer leaves
    autograd an add of the two: the formula's values and gradients, and no add or sum in its backward."""
    widths, scales = (5,), (2.0,)
    x, weight, b, a, bb = _operands(0.0, widths)
    f = lambda x, *ab: GroupedLora.apply(x, weight, b, 0.0, scales, widths, None, *ab)
    assert torch.autograd.gradcheck(f, (x, *a, *bb))
    torch.manual_seed(3)
    got = GroupedLora.apply(x, weight, b, 0.3, scales, widths, None, *a, *bb)
    loss = got.square().sum()
    with _Ops() as ops:
        got_grads = torch.autograd.grad(loss, (x, *a, *bb))
    torch.manual_seed(3)
    expected = _reference(x, weight, b, a, bb, 0.3, scales, widths)
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, *a, *bb))
    assert torch.allclose(got, expected) and all(torch.allclose(g, e) for g, e in zip(got_grads, expected_grads))
    assert not {"add", "add_", "sum"} & set(ops.names), ops.names


def test_the_working_copies_lie_side_by_side_so_a_group_reads_its_adapters_without_a_copy():
    """With bfloat16 adapter copies (the GPU's setting, here on a CPU) the trainer lays each group's A
    weights, then its B weights, side by side (FlatParams' work_order): where each weight fills whole
    ALIGN blocks (r=32 at SmolLM2's and Phi-2's widths) the forward stacks nothing, and training takes
    the same steps bit for bit as with the copies in the masters' order."""
    from nli_qlora.model.fused_projections import _stacked, work_order
    from nli_qlora.training.optim import build_optimizer, build_scheduler
    from nli_qlora.training.scoring import LabelScorer
    from nli_qlora.training.step import build_trainer, train_step
    from tests.test_step_modes import _batches

    changes = dict(compute_dtype="bfloat16", lora_compute_dtype="bfloat16", lora_dropout=0.1, optimizer="adamw",
                   fused_projections=True, lora_r=32, lora_alpha=64, **FAST)  # r=32: each A fills whole ALIGN blocks
    losses, stacks = {}, {}
    for ordered in (True, False):
        cfg, bundle = _bundle(**changes)
        fuse_projections_(bundle.model)
        params = [p for p in bundle.model.parameters() if p.requires_grad]
        order = work_order(bundle.model, params) if ordered else None
        torch.manual_seed(0)
        trainer = build_trainer(LabelScorer(bundle.model, bundle.label_ids), params,
                                lambda ps: build_optimizer(cfg, ps)[0], lambda opt: build_scheduler(cfg, opt, 100),
                                step_mode="fast", work_dtype=torch.bfloat16, work_order=order)
        groups = [g for g in groups_of(bundle.model, alone=True) if len(g) > 1]
        a = [m.lora_A["default"].weight for m in groups[0]]
        stacks[ordered] = _stacked(a).data_ptr() == a[0].data_ptr()  # a view of the working copies, not a copy
        with _Ops() as ops:
            bundle.model(input_ids=torch.randint(3, 100, (2, 12)))
        assert ("stack" in ops.names) != ordered
        batches = _batches(3)
        losses[ordered] = [train_step(trainer, [batches[i % 3]])["loss"] for i in range(6)]
        masters = trainer.flat.masters
        assert all(torch.equal(p.detach(), m.to(torch.bfloat16)) for p, m in zip(params, masters))  # published
        assert [m.data_ptr() for m in masters] == sorted(m.data_ptr() for m in masters)  # the masters' order kept
    assert stacks == {True: True, False: False}
    assert losses[True] == losses[False] and losses[True][-1] < losses[True][0]
