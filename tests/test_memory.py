"""nli_qlora.tools.memory: the peak-memory estimate, held against what autograd really keeps (on CPU, with
real bitsandbytes 4-bit layers and peft adapters) and against peaks measured on a GPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nli_qlora.infra.errors import UserError
from nli_qlora.config import RunConfig
from nli_qlora.tools.memory import (ModelShape, estimate_peak_bytes, layer_activation_bytes, lora_parameter_count,
                              parse_budget)
from nli_qlora.model.bundle import fuse_
from nli_qlora.model.load import attach_lora, load_config, match_targets, random_model, resolve_source
from nli_qlora.training.scoring import LabelScorer
from nli_qlora.training.step import FlatParams

GIB = 2**30


@pytest.fixture(scope="module")
def phi2():
    """The real Phi-2 configuration (shipped with the package: no download)."""
    return load_config(resolve_source(RunConfig(model="random:phi-2")))


def published(**changes) -> RunConfig:
    """The published recipe's settings as the memory estimate reads them."""
    return dataclasses.replace(RunConfig(model="random:phi-2", gradient_checkpointing=False, step_mode="eager"),
                               **changes)


# --- what autograd keeps, counted exactly on a CPU ----------------------------------------------------

def _tiny_config(family: str):
    from transformers import LlamaConfig, PhiConfig
    if family == "phi":  # Phi-2's layout: parallel attention + MLP, gelu_new, residual dropout, biases
        return PhiConfig(vocab_size=512, hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, resid_pdrop=0.1, partial_rotary_factor=0.5, tie_word_embeddings=False)
    return LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=384, num_hidden_layers=2,  # SmolLM2's
                       num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)


def saved_activation_bytes(model, batch) -> int:
    """Bytes of the distinct tensors autograd keeps during the decoder's forward (parameters excluded)."""
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        LabelScorer(model, [1, 2, 3]).hidden(batch)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in kept}
    return sum(n for ptr, n in storages.items() if ptr not in params)


@pytest.mark.parametrize("family", ["phi", "llama"])
@pytest.mark.parametrize("dtype,dropout,checkpointing,adapters", [
    ("bfloat16", 0.05, False, "float32"), ("float32", 0.0, False, "float32"), ("float32", 0.05, False, "float32"),
    ("bfloat16", 0.05, True, "float32"), ("bfloat16", 0.05, False, "bfloat16"), ("bfloat16", 0.0, False, "bfloat16"),
    ("float32", 0.05, False, "bfloat16")],
    ids=["bf16-dropout", "fp32-no-dropout", "fp32-dropout", "bf16-checkpointing", "bf16-dropout-bf16-adapters",
         "bf16-no-dropout-bf16-adapters", "fp32-dropout-bf16-adapters"])
def test_activation_count_matches_what_autograd_keeps(family, dtype, dropout, checkpointing, adapters):
    """Every term of the activation count (LoRA's input copies in the adapters' dtype and dropout
    masks, SDPA's inputs and output, gelu_new's four tensors, norms, the lighter first layer)
    against autograd; with --lora-compute-dtype bfloat16 the adapters are the loop's working copies."""
    cfg = RunConfig(model="x", lora_dropout=dropout, compute_dtype=dtype, gradient_checkpointing=checkpointing,
                    lora_compute_dtype=adapters)
    measured, estimated, _ = activation_bytes(_tiny_config(family), cfg)
    assert estimated == pytest.approx(measured, rel=0.01)


def activation_bytes(config, cfg: RunConfig, device: str = "cpu", batch_size: int = 4, seq_len: int = 32):
    """(bytes autograd keeps, bytes the estimate counts, the model) for a LoRA model of `config` built
    as the loop builds it: random weights, adapters, the speed options asked for (model.bundle.fuse_, as
    training applies them), the flat buffer (and the working copies with --lora-compute-dtype bfloat16),
    checkpointing when asked."""
    dev = torch.device(device)
    model = random_model(cfg, config, dev, getattr(torch, cfg.compute_dtype))
    model = attach_lora(model, cfg, match_targets(model, cfg.target_modules)[0])
    fuse_(model, cfg, getattr(torch, cfg.compute_dtype))
    FlatParams([p for p in model.parameters() if p.requires_grad], getattr(torch, cfg.lora_compute_dtype))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    mask = torch.ones(batch_size, seq_len, dtype=torch.long, device=dev)
    mask[0, 20:] = 0  # a padded row, as in training
    batch = {"input_ids": torch.randint(3, 500, (batch_size, seq_len), device=dev), "attention_mask": mask}
    measured = saved_activation_bytes(model, batch)
    return measured, estimate_peak_bytes(config, cfg, batch_size, seq_len, device=device)["activations"], model


def test_first_layer_keeps_less_without_checkpointing(phi2):
    """The embedding does not require grad, so layer 0 keeps only what its LoRA branches make."""
    shape = ModelShape.from_config(phi2)
    first, grad = layer_activation_bytes(shape, published(), 8, 64, input_grad=False)
    later, _ = layer_activation_bytes(shape, published(), 8, 64, input_grad=True)
    assert grad and 0 < first < later / 2


# --- the published Phi-2 recipe --------------------------------------------------------------------

def test_lora_parameter_count_is_the_published_one(phi2):
    assert lora_parameter_count(ModelShape.from_config(phi2), published()) == 17_448_960


def test_estimate_grows_with_batch_and_checkpointing_makes_it_smaller(phi2):
    totals = {}
    for ckpt in (False, True):
        cfg = published(gradient_checkpointing=ckpt)
        totals[ckpt] = [estimate_peak_bytes(phi2, cfg, b, 64)["total"] for b in (1, 8, 32, 64)]
        assert totals[ckpt] == sorted(totals[ckpt]) and len(set(totals[ckpt])) == 4
    assert all(on < off for on, off in zip(totals[True], totals[False]))
    longer = estimate_peak_bytes(phi2, published(), 8, 128)["total"]
    assert longer > estimate_peak_bytes(phi2, published(), 8, 64)["total"]


# Peaks measured with scripts/check_memory_estimate.py (torch.cuda.max_memory_allocated over three
# train_step calls, random:phi-2, rows of exactly 64 tokens) on one H200, 2026-11-28; see docs/preflight.md.
MEASURED_GIB = {  # (batch, checkpointing, step_mode) -> GiB
    (8, False, "eager"): 4.226, (32, False, "eager"): 11.054, (64, False, "eager"): 20.239,
    (8, True, "eager"): 2.085, (32, True, "eager"): 2.583, (64, True, "eager"): 3.293,
    (8, False, "fast"): 4.390, (32, False, "fast"): 11.284, (64, False, "fast"): 20.539,
    (8, True, "fast"): 2.368, (32, True, "fast"): 2.867, (64, True, "fast"): 3.577,
}


@pytest.mark.parametrize("batch_size,checkpointing,step_mode", sorted(MEASURED_GIB))
def test_estimate_is_within_15_percent_of_the_measured_peak(phi2, batch_size, checkpointing, step_mode):
    cfg = published(gradient_checkpointing=checkpointing, step_mode=step_mode)
    allocated = estimate_peak_bytes(phi2, cfg, batch_size, 64)["allocated"] / GIB
    assert allocated == pytest.approx(MEASURED_GIB[batch_size, checkpointing, step_mode], rel=0.15)


def test_other_measured_setups_are_within_15_percent(phi2):
    """The same script on the same H200: a bf16 base (--quantization none) and the whole-sequence lm loss."""
    bf16 = published(quantization="none")
    assert estimate_peak_bytes(phi2, bf16, 8, 64)["allocated"] / GIB == pytest.approx(7.671, rel=0.15)
    assert estimate_peak_bytes(phi2, bf16, 64, 64)["allocated"] / GIB == pytest.approx(23.717, rel=0.15)
    lm = published(loss="lm")
    assert estimate_peak_bytes(phi2, lm, 8, 144)["allocated"] / GIB == pytest.approx(7.658, rel=0.15)
    assert estimate_peak_bytes(phi2, lm, 32, 144)["allocated"] / GIB == pytest.approx(25.094, rel=0.15)


# --compile: peaks measured with scripts/check_memory_estimate.py --compile --checkpointing off (step_mode
# fast) on one H200, 2026-12-01 (docs/bench/memory-compile*-h200.json); the uncompiled count was 12-55% over.
MEASURED_COMPILED_GIB = {  # (model, dequantized + bf16 adapters, batch, seq) -> GiB
    ("random:phi-2", True, 8, 64): 6.706, ("random:phi-2", True, 32, 64): 10.191,
    ("random:phi-2", True, 64, 64): 14.816, ("random:phi-2", False, 8, 64): 3.459,
    ("random:phi-2", False, 32, 64): 7.630, ("random:phi-2", False, 64, 64): 13.183,
    ("smollm2", True, 16, 128): 2.163, ("smollm2", True, 128, 128): 13.132,
}


@pytest.mark.parametrize("model,deq,batch_size,seq_len", sorted(MEASURED_COMPILED_GIB))
def test_compiled_estimate_is_within_15_percent_of_the_measured_peak(model, deq, batch_size, seq_len):
    from transformers import LlamaConfig
    config = load_config(resolve_source(RunConfig(model=model))) if model != "smollm2" else LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, head_dim=64, tie_word_embeddings=True)  # SmolLM2-135M's configuration
    speed = {"dequantize_base": True, "lora_compute_dtype": "bfloat16"} if deq else {}
    cfg = dataclasses.replace(RunConfig(model="x", gradient_checkpointing=False, compile=True), **speed)
    allocated = estimate_peak_bytes(config, cfg, batch_size, seq_len)["allocated"] / GIB
    assert allocated == pytest.approx(MEASURED_COMPILED_GIB[model, deq, batch_size, seq_len], rel=0.15)
    uncompiled = estimate_peak_bytes(config, dataclasses.replace(cfg, compile=False), batch_size, seq_len)
    assert uncompiled["allocated"] > allocated * GIB  # compiled layers keep less


def test_phi2_lands_near_gpu_md(phi2):
    """GPU.md, one H100: NF4 Phi-2, batch 8 x 64 tokens, no checkpointing: 4.3 GB. Its minimal hand loop
    on SNLI-like rows (the longest batch padded to 128 tokens): 6.7 GB at batch 8, 35 GB at batch 64."""
    assert estimate_peak_bytes(phi2, published(), 8, 64)["allocated"] / GIB == pytest.approx(4.3, rel=0.15)
    assert estimate_peak_bytes(phi2, published(), 8, 128)["allocated"] / GIB == pytest.approx(6.7, rel=0.15)
    assert estimate_peak_bytes(phi2, published(), 64, 128)["allocated"] / GIB == pytest.approx(35, rel=0.15)


def test_paged_optimizer_states_are_outside_torchs_count(phi2):
    """bitsandbytes pages the states of tensors of 100,000 values or more (CUDA managed memory)."""
    eager = estimate_peak_bytes(phi2, published(), 8, 64)
    flat = estimate_peak_bytes(phi2, published(step_mode="fast"), 8, 64)  # one flat buffer: all paged
    plain = estimate_peak_bytes(phi2, published(optimizer="adamw_8bit"), 8, 64)
    assert flat["optimizer_states_paged"] > eager["optimizer_states_paged"] > 0 == plain["optimizer_states_paged"]
    for terms in (eager, flat, plain):
        assert terms["allocated"] == sum(v for k, v in terms.items() if k not in
                                         ("allocated", "total", "cuda_context", "allocator_slack", "optimizer_states_paged"))
        assert terms["total"] == terms["allocated"] + terms["optimizer_states_paged"] + terms["cuda_context"] \
            + terms["allocator_slack"]


def test_lm_loss_counts_logits_at_every_position(phi2):
    label = estimate_peak_bytes(phi2, published(loss="label"), 8, 64)["logits"]
    lm = estimate_peak_bytes(phi2, published(loss="lm"), 8, 64)["logits"]
    assert lm > 50 * label


@pytest.mark.parametrize("text,expected", [("48GB", 48 * 10**9), ("40GiB", 40 * 2**30), ("80", 80 * 10**9),
                                           ("A40", 48 * 10**9), ("h100", 80 * 10**9), ("512MiB", 512 * 2**20),
                                           ("48000 MB", 48 * 10**9), ("45GiB", 45 * 2**30), ("1.5e1GB", 15 * 10**9)])
def test_parse_budget(text, expected):
    assert parse_budget(text)[0] == expected


@pytest.mark.parametrize("text", ["lots", "-3GB", "0", "nan", "inf", "48XB"])
def test_parse_budget_rejects_nonsense_naming_the_flag(text):
    with pytest.raises(UserError, match="--memory-budget"):
        parse_budget(text)


# --- scripts/check_memory_estimate.py: what runs without a GPU -----------------------------------------

@pytest.fixture(scope="module")
def check_script():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "scripts" / "check_memory_estimate.py"
    spec = importlib.util.spec_from_file_location("check_memory_estimate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_script_rows_and_table(check_script, phi2):
    estimate = estimate_peak_bytes(phi2, published(), 8, 64)
    row = check_script.compare_row(estimate, int(4.226 * GIB), int(4.318 * GIB), batch_size=8, seq_len=64,
                                   checkpointing=False, step_mode="eager")
    assert row["error_percent"] == pytest.approx(100 * (estimate["allocated"] / GIB - 4.226) / 4.226, abs=0.1)
    table = check_script.render([row])
    assert "error %" in table.splitlines()[0] and "eager" in table.splitlines()[-1]
    rows = check_script.synthetic_rows(8, 64, phi2.vocab_size)
    assert len(rows) == 8 and {len(r.prompt_ids) for r in rows} == {64} and [r.label for r in rows[:3]] == [0, 1, 2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_check_script_without_cuda_says_so_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "scripts/check_memory_estimate.py", "--out", str(tmp_path / "x.json")],
                          cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "needs a CUDA GPU" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_check_script_builds_the_loops_trainer_with_checkpointing_as_asked(check_script):
    """make_trainer is trainer_for after the tuner's checkpointing switch: what the loop measures."""
    import dataclasses

    from nli_qlora.config import preset
    from nli_qlora.model.bundle import load_bundle, with_lora
    for on in (False, True):
        cfg = dataclasses.replace(preset("tiny"), gradient_checkpointing=on)
        bundle = with_lora(load_bundle(cfg, torch.device("cpu")))
        trainer = check_script.make_trainer(bundle.model, cfg)
        assert bundle.model.is_gradient_checkpointing == on and trainer.flat is not None
        assert len(trainer.params) == sum(p.requires_grad for p in bundle.model.parameters())


def test_check_script_refuses_compile_with_checkpointing_on_before_anything_else(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "scripts/check_memory_estimate.py", "--out", str(tmp_path / "x.json"),
                           "--compile", "--checkpointing", "on"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--compile: not with --checkpointing on" in proc.stderr
    assert not (tmp_path / "x.json").exists()
