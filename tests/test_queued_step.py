"""The next step's forward and backward queued before a step's read-back (training.step.queue_next) trains
exactly as one step after the other: the same losses, norms, skips, weights, optimizer state and schedule, and
a checkpoint taken between the two holds the random state of that boundary, so a resume equals a run never
stopped. The queue needs the 8-bit AdamW kernel's update (the device skips a non-finite step itself), which a
GPU runs; here Triton's interpreter runs it (NLI_QLORA_KERNEL_UPDATE=1 for the CLI runs)."""

from __future__ import annotations

import signal

import pytest
import torch

from nli_qlora.config import preset
from nli_qlora.run.metrics import read_metrics
from nli_qlora.training.adamw8bit_kernel import DeviceAdamW8bit
from nli_qlora.training.step import train_step
from tests.test_resume import ENV, Run, assert_same_run, ok
from tests.test_step_modes import _batches, _trainer

KERNEL_ENV = {**ENV, "NLI_QLORA_KERNEL_UPDATE": "1", "TRITON_INTERPRET": "1"}


def _kernel_trainer():
    torch.manual_seed(0)  # the same LoRA initialisation and dropout stream for both orders
    cfg = preset("tiny")
    cfg.optimizer, cfg.lora_dropout = "paged_adamw_8bit", 0.1
    trainer, _ = _trainer(cfg, "fast")
    trainer.device_update = DeviceAdamW8bit(trainer.optimizer, trainer.flat.param)  # as on a GPU
    return trainer


def _steps():
    batches = _batches(6)
    batches[2]["labels"][:] = -100  # no row counts: a NaN loss, which the device skips
    return batches


def _state(trainer) -> dict:
    opt = trainer.optimizer.state[trainer.flat.param]
    return {"weights": trainer.flat.param.detach().clone(), "lr": trainer.optimizer.param_groups[0]["lr"],
            **{k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in opt.items()}}


def test_a_queued_next_step_trains_bit_for_bit_as_one_step_after_the_other():
    batches = _steps()
    one_by_one, rng_after = _kernel_trainer(), []
    plain = []
    for b in batches:
        plain.append(train_step(one_by_one, [b]))
        rng_after.append(torch.get_rng_state())

    queued_trainer, queued = _kernel_trainer(), []
    for i, b in enumerate(batches):
        then = (lambda i=i: ([batches[i + 1]], None)) if i + 1 < len(batches) else None
        queued.append(train_step(queued_trainer, None if queued_trainer.queued else [b], then=then))
        if i + 1 < len(batches):
            assert queued_trainer.queued is not None
            assert torch.equal(queued_trainer.rng_at_boundary()["torch"], rng_after[i]), \
                "a checkpoint here holds the generators as the step left them, not as the queued forward did"

    assert [s["skipped"] for s in plain] == [False, False, True, False, False, False]
    assert [s["queued"] for s in queued] == [False] + [True] * 5 and not any(s["queued"] for s in plain)
    strip = lambda stats: [{k: v for k, v in s.items() if k != "queued"} for s in stats]  # noqa: E731
    assert str(strip(queued)) == str(strip(plain)), "the same losses (NaN included), norms and skips"
    a, b = _state(one_by_one), _state(queued_trainer)
    assert a.keys() == b.keys()
    for k in a:
        assert (torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]), k
    assert a["step"] == 5, "the skipped step is not counted"


def test_a_failure_while_queuing_queues_nothing_and_the_next_step_meets_it():
    trainer = _kernel_trainer()
    batches = _steps()
    before = torch.get_rng_state()

    def broken():
        raise RuntimeError("the next batch could not be built")

    stats = train_step(trainer, [batches[0]], then=broken)
    assert not stats["skipped"] and trainer.queued is None
    assert torch.equal(torch.get_rng_state(), _rng_after_one_step(batches[0])) and not torch.equal(
        torch.get_rng_state(), before), "the generators as the step alone left them"
    assert not train_step(trainer, [batches[1]])["skipped"], "the next step runs from its batches"


def _rng_after_one_step(batch) -> torch.Tensor:
    trainer = _kernel_trainer()
    train_step(trainer, [batch])
    return torch.get_rng_state()


def test_a_step_is_given_its_batches_exactly_when_none_is_queued():
    trainer = _kernel_trainer()
    batches = _steps()
    with pytest.raises(ValueError, match="exactly when no step is queued"):
        train_step(trainer, None)
    train_step(trainer, [batches[0]], then=lambda: ([batches[1]], None))
    with pytest.raises(ValueError, match="exactly when no step is queued"):
        train_step(trainer, [batches[1]])
    assert trainer.queued is not None, "the refused call left the queued step queued"
    assert train_step(trainer, None)["queued"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """An uninterrupted run and one stopped (SIGTERM) at step 4 and resumed, both stepping by the kernel."""
    root = tmp_path_factory.mktemp("queued")
    reference = Run.start(root / "reference", env=KERNEL_ENV)
    stopped = Run.start(root / "stopped", env=KERNEL_ENV)
    stopped.wait_for_step(4)
    stopped.proc.send_signal(signal.SIGTERM)
    term_rc, term_records = stopped.finish(), stopped.records()
    ok(Run.resume(root / "stopped", env=KERNEL_ENV))
    return {"reference": ok(reference).run_dir, "stopped": root / "stopped", "term_rc": term_rc,
            "term_records": term_records}


def test_a_run_stopped_between_a_step_and_the_one_queued_during_it_resumes_to_the_same_run(runs):
    assert runs["term_rc"] == 130
    records = read_metrics(runs["reference"] / "metrics.jsonl")
    steps = [r for r in records if r["event"] == "step"]
    # every step queued during the one before, but each epoch's first (an evaluation and a checkpoint come between)
    assert [r["queued"] for r in steps] == [r["epoch_step"] > 1 for r in steps]
    saved = [r for r in runs["term_records"] if r["event"] == "checkpoint" and r["kind"] == "interrupt"]
    assert saved and saved[0]["step"] % 10, "stopped inside an epoch: with the next step queued"
    assert_same_run(runs["stopped"], runs["reference"])


def test_the_kernel_update_on_a_cpu_is_only_taken_when_asked(monkeypatch):
    import bitsandbytes as bnb

    flat = torch.nn.Parameter(torch.zeros(8192))
    monkeypatch.delenv("NLI_QLORA_KERNEL_UPDATE", raising=False)
    assert DeviceAdamW8bit.for_optimizer(bnb.optim.AdamW8bit([flat]), flat) is None
    monkeypatch.setenv("NLI_QLORA_KERNEL_UPDATE", "1")
    assert isinstance(DeviceAdamW8bit.for_optimizer(bnb.optim.AdamW8bit([flat]), flat), DeviceAdamW8bit)
