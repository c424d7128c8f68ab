"""Checkpoints: a peft adapter (loadable with `PeftModel.from_pretrained`) plus what resuming needs.

    RUN_DIR/checkpoints/epoch-3/
        adapter_model.safetensors, adapter_config.json   peft's own files
        config.json                                     the RunConfig of the run
        trainer_state.pt                                optimizer, scheduler, RNG states, position
        state.json                                      step, epoch, epoch_step, metrics offset (readable)
        checksums.json                                  SHA-256 of each file above, checked when loaded
        COMPLETE                                        written last; a directory without it is ignored

Each is written under a temporary name and renamed into place (atomic.staged_dir), so a crash
mid-save leaves the previous checkpoint intact and never a half one that looks complete.
`latest` picks the newest complete one; a resume starts from it (docs/reliability.md)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from nli_qlora.infra.atomic import staged_dir
from nli_qlora.infra.digest import file_sha256
from nli_qlora.config import RunConfig
from nli_qlora.infra.errors import UserError


@dataclass
class Position:
    """Where training stands: `epoch_step` batches of `epoch` are done (epoch is 1-based)."""
    step: int = 0
    epoch: int = 1
    epoch_step: int = 0
    metrics_offset: int = 0  # bytes of metrics.jsonl written when this checkpoint was taken
    bad_steps_in_a_row: int = 0
    skipped_steps: int = 0
    zero_shot_done: bool = False  # the epoch-0 evaluations are in the metrics file already


def torch_rng_state() -> dict:
    """torch's generators (CPU, and each CUDA device's): what dropout draws from."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rng_state(torch_rng: dict | None = None) -> dict:
    """Every generator a run draws from; torch's as given (`torch_rng`), else as they stand."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), **(torch_rng or torch_rng_state())}


def set_torch_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    set_torch_rng_state(state)


@dataclass
class Snapshot:
    """A checkpoint's contents copied to host memory, so that the steps after it cannot change them
    while it is written (run.saving writes it on a worker thread)."""
    adapter: dict[str, torch.Tensor]  # peft's names and layout: what PeftModel.save_pretrained would write
    adapter_config: object  # a copy of the peft LoraConfig, as save_pretrained writes it
    cfg: RunConfig
    trainer_state: dict  # optimizer, scheduler, RNG, position


def _host_copy(value):
    """`value` with every tensor in it copied to host memory; containers rebuilt, the rest deep-copied."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _host_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_host_copy(v) for v in value)
    return copy.deepcopy(value)


def snapshot(model, cfg: RunConfig, optimizer, scheduler, pos: Position, torch_rng: dict | None = None) -> Snapshot:
    """The checkpoint as training stands now. Called with the float32 masters seated. The adapter is
    peft's own state dict (`get_peft_model_state_dict`) of the trainable weights alone: the whole
    model's state_dict would also pack every 4-bit weight's quantization state, for nothing.
    `torch_rng`: torch's generators as they stood at this step's end, where the next step's forward was
    queued since (training.step.Trainer.rng_at_boundary)."""
    from peft import get_peft_model_state_dict

    trainable = {name: _host_copy(p) for name, p in model.named_parameters() if p.requires_grad}
    adapter = get_peft_model_state_dict(model, state_dict=trainable, save_embedding_layers=False)
    config = copy.deepcopy(model.peft_config["default"])
    if config.base_model_name_or_path is None:  # as PeftModel.save_pretrained fills it
        config.base_model_name_or_path = model.base_model.model.__dict__.get("name_or_path")
    config.inference_mode = True
    state = {"optimizer": _host_copy(optimizer.state_dict()), "scheduler": copy.deepcopy(scheduler.state_dict()),
             "rng": rng_state(torch_rng), "position": asdict(pos)}
    return Snapshot(adapter, config, cfg, state)


def write(path: Path, snap: Snapshot) -> Path:
    """A complete checkpoint at `path` from a snapshot; touches no live model state, so it may run on
    another thread. The adapter files are those PeftModel.save_pretrained writes, without its model card."""
    from safetensors.torch import save_file

    with staged_dir(path) as tmp:
        save_file(snap.adapter, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        snap.adapter_config.save_pretrained(str(tmp))
        snap.cfg.save(tmp / "config.json")
        with open(tmp / "trainer_state.pt", "wb") as f:  # a Python file: a full disk surfaces as OSError
            torch.save(snap.trainer_state, f)
        (tmp / "state.json").write_text(json.dumps(snap.trainer_state["position"]) + "\n")
        sums = {f.name: file_sha256(f) for f in sorted(tmp.iterdir()) if f.is_file()}
        (tmp / CHECKSUMS).write_text(json.dumps(sums, indent=1) + "\n")
    return path


CHECKSUMS = "checksums.json"


def read_files(path: Path, flag: str) -> dict[str, bytes]:
    """The checkpoint's files, {name: bytes}, each checked against the SHA-256 its checksums.json
    holds: a file changed after it was written (a bad disk, a copy cut short, an edit) is named,
    never loaded. Checkpoints made before checksums were written have none to check. In memory, so
    a resume can also hand them to a process on another machine (run.handover)."""
    files = {f.name: f.read_bytes() for f in sorted(Path(path).iterdir()) if f.is_file()}
    check_sums(path, files, flag)
    return files


def check_sums(path: Path, files: dict[str, bytes], flag: str) -> None:
    """Every file checksums.json names is among `files` with that SHA-256."""
    listed = files.get(CHECKSUMS)
    if listed is None:
        return
    try:
        sums = json.loads(listed)
    except ValueError as err:
        raise UserError(f"{flag}: {path / CHECKSUMS} is damaged ({err}); move the checkpoint aside") from None
    for name, expected in sums.items():
        data = files.get(name)
        if data is None or hashlib.sha256(data).hexdigest() != expected:
            raise UserError(f"{flag}: {path / name} is {'missing' if data is None else 'damaged'}: it does not "
                            f"match the checksum written with the checkpoint; move it aside")


def verify(path: Path, flag: str) -> None:
    """read_files' check alone (the score command loads the adapter through peft afterwards)."""
    read_files(path, flag)


def check_finite(tensors: dict[str, torch.Tensor], path: Path, flag: str) -> None:
    """Adapter weights with NaN or inf would score every row the same and train nothing: refuse them."""
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise UserError(f"{flag}: the adapter in {path} holds non-finite values (NaN or inf) in {name}; "
                            f"it cannot be used")


def is_complete(path: Path) -> bool:
    return (path / "COMPLETE").is_file() and (path / "trainer_state.pt").is_file()


def order(path: Path) -> tuple[int, int] | None:
    """(step, metrics offset): what `latest` compares; None when state.json is damaged."""
    try:
        state = json.loads((path / "state.json").read_text())
        return int(state["step"]), int(state.get("metrics_offset", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint; half-written ones (no COMPLETE, dot names) are never chosen.

    Newest = highest step, then the most metrics written: an interrupt checkpoint at an epoch's last
    step comes before that epoch's own checkpoint (same step, taken after its evaluation)."""
    root = Path(run_dir) / "checkpoints"
    best, best_key = None, None
    for path in root.iterdir() if root.is_dir() else []:
        if path.name.startswith(".") or not (path / "COMPLETE").is_file():
            continue
        if not is_complete(path):  # COMPLETE is written last: a file went missing since
            raise UserError(f"checkpoint {path} is marked complete but has no trainer_state.pt; move the checkpoint "
                            f"aside to use the one before")
        key = order(path)
        if key is None:  # skipping it would silently pick an older checkpoint
            raise UserError(f"checkpoint {path} has a damaged state.json; move the checkpoint aside to use "
                            f"the one before")
        if best_key is None or key > best_key:
            best, best_key = path, key
    return best


def _damaged(path: Path, err: Exception) -> UserError:
    why = f"{type(err).__name__}: {str(err).splitlines()[0]}" if str(err) else type(err).__name__
    return UserError(f"--resume: checkpoint {path} is damaged ({why}); move it aside to resume from the one before")


def load_trainer_state(path: Path, optimizer, scheduler, files: dict[str, bytes] | None = None) -> Position:
    """Optimizer, scheduler and RNG state from the checkpoint's files (read from `path` when not given)."""
    files = read_files(path, "--resume") if files is None else files
    try:
        # weights_only=False: the file holds numpy RNG state; it is our own file from this run directory
        state = torch.load(io.BytesIO(files["trainer_state.pt"]), map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        return Position(**state["position"])
    except Exception as err:  # unpickling, a truncated zip, missing keys: the file is not what we wrote
        raise _damaged(path / "trainer_state.pt", err) from None


def load_adapter_weights(model, path: Path, files: dict[str, bytes] | None = None) -> None:
    """The LoRA weights from the checkpoint's files (read from `path` when not given)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load

    files = read_files(path, "--resume") if files is None else files
    if "adapter_model.safetensors" not in files:
        raise UserError(f"{path}: no adapter_model.safetensors (not a checkpoint of this toolkit?)")
    try:
        tensors = load(files["adapter_model.safetensors"])
    except Exception as err:  # safetensors raises its own error type for a broken file
        raise _damaged(path / "adapter_model.safetensors", err) from None
    check_finite(tensors, path, "--resume")
    device = next(model.parameters()).device
    result = set_peft_model_state_dict(model, {k: t.to(device) for k, t in tensors.items()})
    if getattr(result, "unexpected_keys", None):
        raise UserError(f"{path}: adapter does not fit the base model (unexpected {result.unexpected_keys[0]})")


def config_of(path: str | Path) -> RunConfig:
    """The RunConfig a checkpoint (or run directory) carries."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--checkpoint: no such checkpoint {path}")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise UserError(f"--checkpoint: {path} has no config.json (not a checkpoint of this toolkit?)")
    return RunConfig.load_saved(cfg_file, flag="--checkpoint")
