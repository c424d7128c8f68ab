"""The model bundle: everything a run, the score command, the tuner and the peer script load for
one model, built one way (tokenizer, label and answer tokens, compute dtype, 4-bit base, LoRA).

    bundle = load_bundle(cfg, device)      # the 4-bit base, as from_pretrained or random: loads it
    bundle = with_lora(bundle)             # new LoRA adapters on cfg.target_modules (then
                                           # the base dequantized once, with --dequantize-base)

The score command puts a saved adapter on the base instead (predict.targets.load_adapter)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from nli_qlora.config import RunConfig
from nli_qlora.data.prompt import answer_token_ids, label_token_ids
from nli_qlora.model.dequantize import dequantize_base_
from nli_qlora.model.fused_lora import check_one_dtype, fuse_lora_
from nli_qlora.model.fused_norm import fuse_norms_
from nli_qlora.model.fused_projections import fuse_projections_
from nli_qlora.model.fused_rope import fuse_rope_, warm_up_meanwhile
from nli_qlora.model.gguf import converted_all
from nli_qlora.model.load import (ModelSource, attach_lora, check_context, compute_dtype, load_base_model,
                                  load_tokenizer, match_targets, parameter_counts, resolve_source, tokenizer_source)


@dataclass(frozen=True)
class ModelBundle:
    cfg: RunConfig
    device: torch.device
    dtype: torch.dtype
    source: ModelSource
    tokenizer: object
    label_ids: list[int]  # each label word's first token: the scorer's classes
    answer_ids: list[list[int]]  # each label word's tokens plus eos: what the lm loss appends
    model: torch.nn.Module
    matched: list[str] = field(default_factory=list)  # LoRA targets found in the model
    unmatched: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # model.load.parameter_counts, once adapters are on

    def appended_answers(self, loss: str) -> list[list[int]] | None:
        """What collate appends to each row: its answer tokens under the lm loss, else nothing."""
        return self.answer_ids if loss == "lm" else None


def load_bundle(cfg: RunConfig, device: torch.device, trains: bool = True) -> ModelBundle:
    """Tokenizer, label tokens and the 4-bit base model. `trains`: see model.load.load_base_model."""
    torch.manual_seed(cfg.seed)
    source = resolve_source(cfg)
    if source.gguf_file and not source.random:  # the weights too: both parts from one parse of the file
        converted_all(source.gguf_path())
    tokenizer = load_tokenizer(tokenizer_source(cfg, source))
    label_ids = label_token_ids(tokenizer, cfg.label_words)
    dtype = compute_dtype(cfg, device)
    if cfg.fused_rope:  # Triton's first launch (0.7 s) on a thread while the model loads; fuse_rope_ waits for it
        warm_up_meanwhile(device, dtype)
    model = load_base_model(cfg, source, device, dtype, trains=trains)
    check_context(model.config, cfg.max_length, cfg.model)
    return ModelBundle(cfg, device, dtype, source, tokenizer, label_ids,
                       answer_token_ids(tokenizer, cfg.label_words), model)


def with_lora(bundle: ModelBundle) -> ModelBundle:
    """New LoRA adapters (seeded by cfg.seed) on the targets the model has, and the counts (of the
    4-bit model, also under --dequantize-base: the published accounting)."""
    matched, unmatched = match_targets(bundle.model, bundle.cfg.target_modules)
    model = attach_lora(bundle.model, bundle.cfg, matched)
    counts = parameter_counts(model)
    if bundle.cfg.dequantize_base:
        dequantize_base_(model)  # after attaching: the adapters initialise as on the 4-bit base
    fuse_(model, bundle.cfg, bundle.dtype)
    return dataclasses.replace(bundle, model=model, matched=matched, unmatched=unmatched, counts=counts)


def fuse_(model: torch.nn.Module, cfg: RunConfig, dtype: torch.dtype) -> None:
    """--fused-lora, then --fused-projections (which builds on it), --fused-norm and --fused-rope, in
    place: as training and scoring both apply them, once the adapters and the (dequantized) base are in place."""
    if cfg.fused_lora:
        check_one_dtype(cfg.lora_compute_dtype, dtype)
        fuse_lora_(model)
    if cfg.fused_projections:
        fuse_projections_(model)
    if cfg.fused_norm:
        fuse_norms_(model)
    if cfg.fused_rope:
        fuse_rope_(model)


def enable_checkpointing(model) -> None:
    """Gradient checkpointing as every trainer here turns it on: non-reentrant, input grads on."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
