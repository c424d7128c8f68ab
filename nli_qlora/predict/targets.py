"""What the score command scores with: a checkpoint (its own settings and adapter) or a pretrained
model zero-shot (a preset's prompt and label words), loaded as the training loop loads it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from nli_qlora.config import RunConfig, preset
from nli_qlora.infra.errors import UserError
from nli_qlora.infra.machine import default_device
from nli_qlora.model.bundle import ModelBundle, fuse_, load_bundle
from nli_qlora.model.dequantize import dequantize_base_
from nli_qlora.run import checkpoint as ckpt
from nli_qlora.training.scoring import LabelScorer

# settings that change how a model runs, not what it answers: these may override a checkpoint's own
RUN_SETTINGS = ("max_length", "eval_batch_size", "quantization", "compute_dtype", "dequantize_base",
                "lora_compute_dtype", "fused_lora", "fused_projections", "fused_norm",
                "fused_rope", "attention_kernel")
# settings that define the classifier: a checkpoint carries them, only a zero-shot model takes them
PROMPT_SETTINGS = ("prompt_template", "label_words", "labels", "label_map", "tokenizer")


def given(args, names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def find_checkpoint(path: str, flag: str = "--checkpoint") -> Path:
    """A checkpoint directory; a run directory gives its latest complete checkpoint."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{flag}: no such checkpoint {p}")
    if (p / "checkpoints").is_dir() or (p / "metrics.jsonl").is_file():
        latest = ckpt.latest(p)
        if latest is None:
            raise UserError(f"{flag}: run directory {p} has no complete checkpoint yet")
        return latest
    for name in ("config.json", "adapter_config.json", "adapter_model.safetensors"):
        if not (p / name).is_file():
            raise UserError(f"{flag}: {p} has no {name} (not a checkpoint of this toolkit?)")
    if not (p / "COMPLETE").is_file():
        raise UserError(f"{flag}: {p} is incomplete (no COMPLETE marker: it was being written when its run "
                        f"stopped); give the run directory to use its newest complete checkpoint")
    return p


def is_checkpoint_path(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / n).exists() for n in ("checkpoints", "metrics.jsonl", "adapter_config.json"))


@dataclass
class Target:
    """One thing to score with: its settings and, for a fine-tuned one, the adapter directory."""
    name: str  # as the user named it
    cfg: RunConfig
    checkpoint: Path | None
    flag: str


def run_settings(args) -> dict:
    """The RUN_SETTINGS given as flags. --quantization none turns a checkpoint's --dequantize-base off
    (there is no 4-bit base to dequantize) unless that flag is given too."""
    run = given(args, RUN_SETTINGS)
    if run.get("quantization") == "none":
        run.setdefault("dequantize_base", False)
    return run


def main_target(args) -> Target:
    run = run_settings(args)
    if args.checkpoint:
        path = find_checkpoint(args.checkpoint)
        cfg = ckpt.config_of(path)
        changes = dict(run, **({"model": args.model, "revision": None} if args.model else {}))
        return Target(str(path), dataclasses.replace(cfg, **changes).validate(), path, "--checkpoint")
    cfg = preset(args.preset or "seed")
    changes = dict(run, **given(args, PROMPT_SETTINGS), **({"model": args.model} if args.model else {}))
    return Target(args.model or cfg.model, dataclasses.replace(cfg, **changes).validate(), None, "--model")


def compare_target(spec: str, main: Target, args) -> Target:
    """A checkpoint uses its own settings; a model is scored zero-shot with the main prompt and label words."""
    run = run_settings(args)
    if is_checkpoint_path(spec):
        path = find_checkpoint(spec, "--compare")
        return Target(str(path), dataclasses.replace(ckpt.config_of(path), **run).validate(), path, "--compare")
    same = spec == main.cfg.model
    cfg = dataclasses.replace(main.cfg, model=spec, tokenizer=main.cfg.tokenizer if same else None,
                              revision=main.cfg.revision if same else None)
    return Target(spec, cfg.validate(), None, "--compare")


# --- loading: the same pieces the training loop builds ------------------------------------------

@dataclass
class Loaded:
    """A target's model bundle (model.bundle) ready to score, and the scorer over it."""
    target: Target
    bundle: ModelBundle
    scorer: LabelScorer

    @property
    def cfg(self) -> RunConfig:
        return self.target.cfg

    @property
    def tokenizer(self):
        return self.bundle.tokenizer


def load(target: Target, dev: torch.device | None = None) -> Loaded:
    """Tokenizer, label tokens, 4-bit base model and (for a checkpoint) its adapter, ready to score."""
    bundle = load_bundle(target.cfg, dev or default_device(), trains=False)  # scoring never trains
    if target.checkpoint is not None:
        bundle = dataclasses.replace(bundle, model=load_adapter(bundle.model, target))
    if target.cfg.dequantize_base:
        dequantize_base_(bundle.model)  # after the adapter: it loads as onto the 4-bit base
    adapter_copies_(bundle.model, target.cfg.lora_compute_dtype)
    fuse_(bundle.model, target.cfg, bundle.dtype)
    bundle.model.eval()
    return Loaded(target, bundle, LabelScorer(bundle.model, bundle.label_ids, target.cfg.attention_kernel))


def adapter_copies_(model, dtype_name: str) -> None:
    """--lora-compute-dtype bfloat16: the adapters in the dtype the run computed (and evaluated) with,
    made from the float32 weights saved, as training makes its working copies: so scoring a
    checkpoint gives the predictions the run's own evaluation gave."""
    if dtype_name == "float32":
        return
    dtype = getattr(torch, dtype_name)
    for name, p in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            p.data = p.data.to(dtype)


def load_adapter(base, target: Target):
    """PeftModel.from_pretrained, then a check that every saved adapter tensor found its layer and
    every adapter layer got its tensor (peft only warns, or says nothing, when they do not)."""
    from peft import PeftModel  # lazy: peft imports in seconds, and only loading needs it
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open

    path = target.checkpoint

    def unfit(why: str) -> UserError:
        return UserError(f"{target.flag}: the adapter in {path} does not fit base model {target.cfg.model}: {why}")

    ckpt.verify(path, target.flag)
    try:
        json.loads((path / "adapter_config.json").read_text())
    except ValueError as err:
        raise UserError(f"{target.flag}: {path / 'adapter_config.json'} is damaged: not JSON ({err})") from None
    try:
        with safe_open(str(path / "adapter_model.safetensors"), "pt") as f:
            saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # safetensors' own error type: a truncated or foreign file
        raise UserError(f"{target.flag}: {path / 'adapter_model.safetensors'} is damaged: "
                        f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    try:
        model = PeftModel.from_pretrained(base, str(path), is_trainable=False)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:  # peft: size mismatch, no target module, ...
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        why = next((line for line in lines if "mismatch" in line), lines[0] if lines else type(err).__name__)
        raise unfit(why) from None
    loaded = get_peft_model_state_dict(model, save_embedding_layers=False)
    have = {k: tuple(v.shape) for k, v in loaded.items()}
    if set(saved) - set(have):
        raise unfit(f"no layer for {sorted(set(saved) - set(have))[0]}")
    if set(have) - set(saved):
        raise unfit(f"no weights for {sorted(set(have) - set(saved))[0]}")
    bad = next((k for k in saved if saved[k] != have[k]), None)
    if bad:
        raise unfit(f"{bad} is {saved[bad]} in the file, {have[bad]} in the model")
    ckpt.check_finite(loaded, path, target.flag)  # the weights as loaded: the file is read once, by peft
    return model
