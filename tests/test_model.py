"""The model: 4-bit base, LoRA targets, and the parameter accounting the published report quoted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nli_qlora.config import RunConfig, preset
from nli_qlora.model.families import PHI_TARGETS, PUBLISHED_TARGETS
from nli_qlora.infra.errors import UserError
from nli_qlora.model.load import (attach_lora, build_skeleton, compute_dtype, load_base_model, match_targets,
                             parameter_counts, resolve_source)

PHI2_HIDDEN, PHI2_FFN, PHI2_VOCAB, PHI2_LAYERS = 2560, 10240, 51200, 32
PHI2_BASE_PARAMETERS = 2_779_683_840  # Phi-2's true parameter count


# --- Phi-2's real configuration on the meta device: no weights, no download -------------------------

@pytest.fixture(scope="module")
def phi2_published():
    cfg = RunConfig(model="random:phi-2")
    model, matched, unmatched = build_skeleton(cfg, resolve_source(cfg))
    return model, matched, unmatched


def test_phi2_published_recipe_trains_exactly_the_published_parameter_count(phi2_published):
    model, _, _ = phi2_published
    counts = parameter_counts(model)
    assert counts["trainable"] == 17_448_960
    assert counts["total_packed"] == 1_538_841_600  # what naive sum(numel) gives on bitsandbytes' packed storage
    assert counts["total"] - counts["trainable"] == PHI2_BASE_PARAMETERS  # the real base model
    assert counts["trainable_percent_packed"] == round(100 * 17_448_960 / 1_538_841_600, 4) == 1.1339
    assert counts["trainable_percent"] == round(100 * 17_448_960 / counts["total"], 4)


def test_phi2_trainable_count_is_rank_times_in_plus_out_of_each_matched_layer(phi2_published):
    """q, k, v in 32 layers and lm_head: r (in + out) each, r = 32."""
    r = 32
    qkv = 3 * PHI2_LAYERS * r * (PHI2_HIDDEN + PHI2_HIDDEN)
    head = r * (PHI2_HIDDEN + PHI2_VOCAB)
    assert qkv + head == 17_448_960


def test_phi2_published_targets_match_four_names_and_miss_four(phi2_published):
    """Phi-2 calls its attention output `dense` and its MLP `fc1`/`fc2`: the published list misses them."""
    model, matched, unmatched = phi2_published
    assert matched == ["q_proj", "k_proj", "v_proj", "lm_head"]
    assert unmatched == ["o_proj", "gate_proj", "up_proj", "down_proj"]
    adapted = {name.split(".lora_A.")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if "lora_A" in name}
    assert adapted == {"q_proj", "k_proj", "v_proj", "lm_head"}


def test_phi2_base_linears_are_4bit_except_the_output_head(phi2_published):
    model, _, _ = phi2_published
    base = model.get_base_model()
    kinds = {type(m).__name__ for n, m in base.named_modules() if n.endswith(("fc1", "fc2", "dense", "base_layer"))
             and "lm_head" not in n}
    assert kinds == {"Linear4bit"}
    assert type(base.lm_head.base_layer) is torch.nn.Linear
    assert all(p.device.type == "meta" for p in model.parameters())


def test_phi_aware_targets_match_every_name():
    cfg = RunConfig(model="random:phi-2", target_modules=("phi",))
    assert cfg.target_modules == PHI_TARGETS == ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2")
    model, matched, unmatched = build_skeleton(cfg, resolve_source(cfg))
    assert matched == list(PHI_TARGETS) and unmatched == []
    r = 32
    per_layer = 4 * r * (PHI2_HIDDEN + PHI2_HIDDEN) + 2 * r * (PHI2_HIDDEN + PHI2_FFN)
    assert parameter_counts(model)["trainable"] == PHI2_LAYERS * per_layer == 47_185_920
    assert parameter_counts(model)["total"] - PHI2_LAYERS * per_layer == PHI2_BASE_PARAMETERS


def test_targets_that_match_nothing_are_one_user_error():
    cfg = RunConfig(model="random:phi-2", target_modules=("o_proj", "gate_proj"))
    with pytest.raises(UserError, match=r"^--target-modules: none of \['o_proj', 'gate_proj'\] names a linear "
                                        r"layer of this model"):
        build_skeleton(cfg, resolve_source(cfg))


# --- a real 4-bit tiny model -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_cfg():
    return preset("tiny")


@pytest.fixture(scope="module")
def tiny_lora(tiny_cfg):
    source = resolve_source(tiny_cfg)
    model = load_base_model(tiny_cfg, source, torch.device("cpu"), torch.float32)
    matched, unmatched = match_targets(model, tiny_cfg.target_modules)
    return attach_lora(model, tiny_cfg, matched), matched, unmatched


def test_tiny_model_loads_with_bitsandbytes_4bit_layers(tiny_lora, tiny_cfg):
    import bitsandbytes as bnb
    model, matched, unmatched = tiny_lora
    base = model.get_base_model()
    four_bit = [m for m in base.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 2 * 6  # q k v dense fc1 fc2 in each of 2 layers
    assert all(m.weight.quant_state is not None and m.weight.quant_state.quant_type == "nf4" for m in four_bit)
    assert all(m.weight.dtype == torch.uint8 for m in four_bit)  # packed: two 4-bit values a byte
    assert matched == list(tiny_cfg.target_modules) and unmatched == []


def test_only_lora_weights_train(tiny_lora):
    model, _, _ = tiny_lora
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)


def test_tiny_parameter_counts_agree_with_the_meta_skeleton_of_the_same_config(tiny_lora, tiny_cfg):
    real = parameter_counts(tiny_lora[0])
    skeleton, matched, unmatched = build_skeleton(tiny_cfg, resolve_source(tiny_cfg))
    assert parameter_counts(skeleton) == real
    assert (matched, unmatched) == (tiny_lora[1], tiny_lora[2])
    # and the figures are the ones the architecture implies
    h, ffn, layers, vocab, r = 64, 256, 2, 128, 8
    linear = lambda i, o, bias=True: i * o + (o if bias else 0)  # noqa: E731
    lora = lambda i, o: r * (i + o)  # noqa: E731
    base_linears = layers * (4 * linear(h, h) + linear(h, ffn) + linear(ffn, h))
    other = vocab * h + layers * 2 * h + 2 * h + linear(h, vocab)  # embeddings, layer norms, final norm, head
    trainable = layers * (4 * lora(h, h) + lora(h, ffn) + lora(ffn, h)) + lora(h, vocab)
    assert real["trainable"] == trainable
    assert real["total"] == base_linears + other + trainable
    four_bit_weights = layers * (4 * h * h + 2 * h * ffn)
    assert real["total_packed"] == real["total"] - four_bit_weights // 2


def test_published_targets_on_the_tiny_phi_report_the_unmatched_ones(tiny_cfg):
    cfg = RunConfig(**{**tiny_cfg.to_dict(), "target_modules": PUBLISHED_TARGETS})
    _, matched, unmatched = build_skeleton(cfg, resolve_source(cfg))
    assert matched == ["q_proj", "k_proj", "v_proj", "lm_head"]
    assert unmatched == ["o_proj", "gate_proj", "up_proj", "down_proj"]


def test_compute_dtype_auto_is_float32_on_cpu():
    assert compute_dtype(RunConfig(), torch.device("cpu")) == torch.float32
    assert compute_dtype(RunConfig(compute_dtype="bfloat16"), torch.device("cpu")) == torch.bfloat16


def test_an_unknown_builtin_model_is_one_user_error():
    with pytest.raises(UserError, match=r"^--model: unknown built-in model 'builtin:huge'"):
        resolve_source(RunConfig(model="builtin:huge"))


def test_a_missing_local_directory_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="^--model: no such directory"):
        resolve_source(RunConfig(model=str(tmp_path / "nothing-here")))


# --- random:NAME: the same weights in every process ------------------------------------------------------

WEIGHTS_DIGEST = """
import hashlib, sys, dataclasses, torch
from nli_qlora.config import preset
from nli_qlora.model.load import load_base_model, resolve_source
torch.rand(int(sys.argv[2]))  # another process's random state differs: it must not matter
cfg = dataclasses.replace(preset("tiny"), model="random:builtin:tiny-phi", seed=int(sys.argv[1]))
model = load_base_model(cfg, resolve_source(cfg), torch.device("cpu"), torch.float32)
digest = hashlib.sha256()
for name, value in sorted(model.state_dict().items()):
    digest.update(name.encode() + value.detach().contiguous().view(torch.uint8).numpy().tobytes())
print(digest.hexdigest())
"""


def _weights_digest(seed: int, draws: int) -> str:
    proc = subprocess.run([sys.executable, "-c", WEIGHTS_DIGEST, str(seed), str(draws)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_random_weights_depend_on_the_seed_alone_in_every_process():
    """Two processes (as two ranks of a torchrun job, or two runs) that drew different random numbers
    before building get bit-identical 4-bit weights; another seed gives others."""
    first, second, other = _weights_digest(0, 1), _weights_digest(0, 1000), _weights_digest(1, 1)
    assert first == second != other
