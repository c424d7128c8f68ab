"""Checkpoints written on a worker thread (run.saving): the files are peft's, the contents are those of
the step boundary they were taken at whatever trains after it, and the writes are handed back one at a
time with their errors. Real peft, real bitsandbytes, the loop's own step; the failure paths end to end
(a full disk, a directory turning read-only, kill -9 inside a write) are in test_failures and test_resume."""

from __future__ import annotations

import errno
import json
import threading

import pytest
import torch
from safetensors.torch import load_file

from nli_qlora.infra.storage import DiskError
from nli_qlora.run import checkpoint as ckpt
from nli_qlora.run.saving import BackgroundSaves
from nli_qlora.training.optim import trainer_for
from nli_qlora.training.step import train_step
from tests.test_dequantize_base import _bundle
from tests.test_step_modes import _batches


def _trained(steps: int = 2, **changes):
    cfg, bundle = _bundle(**changes)
    torch.manual_seed(0)
    trainer, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=100)
    batches = _batches(steps)
    for batch in batches:
        train_step(trainer, [batch])
    return cfg, bundle.model, trainer


def _tensors(value) -> list[torch.Tensor]:
    """Every tensor in a nested state dict (bitsandbytes nests its quantization states), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else []
    return [t for v in items for t in _tensors(v)]


def _write(tmp_path, cfg, model, trainer, name: str = "ckpt"):
    with trainer.masters_seated():
        snap = ckpt.snapshot(model, cfg, trainer.optimizer, trainer.scheduler, ckpt.Position(step=2))
    return ckpt.write(tmp_path / name, snap)


@pytest.mark.parametrize("lora_compute_dtype", ["float32", "bfloat16"])
def test_the_adapter_files_are_what_peft_save_pretrained_writes(tmp_path, lora_compute_dtype):
    cfg, model, trainer = _trained(lora_compute_dtype=lora_compute_dtype)
    ours = _write(tmp_path, cfg, model, trainer)
    with trainer.masters_seated():
        model.save_pretrained(str(tmp_path / "peft"), save_embedding_layers=False)
    theirs = tmp_path / "peft"
    mine, peft_own = load_file(str(ours / "adapter_model.safetensors")), load_file(str(theirs / "adapter_model.safetensors"))
    assert mine.keys() == peft_own.keys() and len(mine) > 0
    assert all(mine[k].dtype == torch.float32 and torch.equal(mine[k], peft_own[k]) for k in mine)
    configs = [json.loads((d / "adapter_config.json").read_text()) for d in (ours, theirs)]
    for c in configs:  # a set in peft's config: its listed order is the set's
        c["target_modules"] = sorted(c["target_modules"])
    assert configs[0] == configs[1]
    assert ckpt.is_complete(ours)
    ckpt.verify(ours, "--resume")  # every file matches the checksum written with it


def test_a_snapshot_keeps_the_boundary_it_was_taken_at_while_training_goes_on(tmp_path):
    """The worker writes while the next steps update the weights and the optimizer's 8-bit states in
    place: the files must hold the boundary's values, and a resume from them take the same next step."""
    cfg, model, trainer = _trained(optimizer="paged_adamw_8bit")
    with trainer.masters_seated():
        at_boundary = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        snap = ckpt.snapshot(model, cfg, trainer.optimizer, trainer.scheduler, ckpt.Position(step=2))
    states = [t.clone() for t in _tensors(trainer.optimizer.state_dict())]
    next_batch = _batches(3, seed=1)[0]
    expected = train_step(trainer, [next_batch])  # changes the live weights and states after the snapshot
    with trainer.masters_seated():
        after = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert not all(torch.equal(p.detach(), at_boundary[n]) for n, p in model.named_parameters() if p.requires_grad)
    path = ckpt.write(tmp_path / "ckpt", snap)

    saved = load_file(str(path / "adapter_model.safetensors"))
    assert len(saved) == len(at_boundary)
    for name, value in at_boundary.items():
        assert torch.equal(saved[name.replace(".default", "")], value.cpu()), name
    state = torch.load(path / "trainer_state.pt", weights_only=False)
    held = _tensors(state["optimizer"])
    assert len(held) == len(states) > 0 and all(torch.equal(a, b) for a, b in zip(held, states))

    cfg2, model2, trainer2 = _trained(steps=0, optimizer="paged_adamw_8bit")  # a fresh process's state
    with trainer2.masters_seated():
        ckpt.load_adapter_weights(model2, path)
    ckpt.load_trainer_state(path, trainer2.optimizer, trainer2.scheduler)
    trainer2.publish()
    assert train_step(trainer2, [next_batch])["loss"] == expected["loss"]
    with trainer2.masters_seated():  # and the same update: the optimizer's states were the boundary's too
        assert all(torch.equal(p.detach(), after[n]) for n, p in model2.named_parameters() if p.requires_grad)


def test_writes_are_handed_back_one_at_a_time_once_done():
    saves, gate = BackgroundSaves(), threading.Event()
    saves.start("ckpt/one", gate.wait, {"step": 1})
    assert saves.pending and saves.finished(block=False) is None  # still writing
    with pytest.raises(RuntimeError, match="still in flight"):
        saves.start("ckpt/two", lambda: None, {"step": 2})
    gate.set()
    done = saves.finished(block=True)
    assert done.record == {"step": 1} and done.future.result() is True and not saves.pending
    assert saves.finished(block=True) is None
    saves.close()


def test_a_failed_background_write_reaches_the_recipe_as_one_disk_error_naming_the_checkpoint(tmp_path):
    """The worker's OSError is kept until the recipe takes the write back (_record_saved), where it
    becomes the usual one-line DiskError: a file where the run directory should be."""
    from nli_qlora.infra.storage import writing

    cfg, model, trainer = _trained()
    (tmp_path / "run").write_text("in the way")
    path = tmp_path / "run" / "checkpoints" / "epoch-1"
    with trainer.masters_seated():
        snap = ckpt.snapshot(model, cfg, trainer.optimizer, trainer.scheduler, ckpt.Position(step=2))
    saves = BackgroundSaves()
    saves.start(path, lambda: ckpt.write(path, snap), {"step": 2})
    done = saves.finished(block=True)
    with pytest.raises(DiskError) as raised:
        with writing(done.path, "write checkpoint"):
            done.future.result()
    assert str(raised.value) == f"cannot write checkpoint {path}: {__import__('os').strerror(errno.ENOTDIR)} " \
                                f"(a file is in the way of a directory)"
    saves.close()
