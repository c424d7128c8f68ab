"""--compile: the decoder layers compiled for the training step take the eager step's arithmetic, compile
once for every batch shape, and leave evaluation uncompiled. Real dynamo and AOT autograd ("aot_eager":
no code generation) check the arithmetic bit for bit; the CLI runs real inductor (C++ kernels on a CPU).
The CUDA-graph capture of compiled layers is scripts/gpu_smoke.sh's (`compiled = eager`, `resume =
uninterrupted (compile)`)."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from torch._dynamo.utils import counters

from nli_qlora.config import preset
from nli_qlora.data.batches import Encoded, collate
from nli_qlora.model.compile_layers import compile_layers_, decoder_layers, is_compiled
from nli_qlora.tools.tune import Candidate
from nli_qlora.training.evaluate import predict
from nli_qlora.training.optim import trainer_for
from nli_qlora.training.step import train_step
from tests.test_dequantize_base import _bundle
from tests.test_step_modes import _batches


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


def _shapes() -> list[dict]:
    """Batches of two widths and, last, a shorter batch of another width: the shapes one run meets."""
    g = torch.Generator().manual_seed(1)
    rows = lambda n, length: [Encoded(tuple(torch.randint(3, 100, (length,), generator=g).tolist()), i % 3, i)
                              for i in range(n)]
    return _batches(2) + [collate(rows(8, 10), pad_id=0, pad_multiple=16), collate(rows(3, 40), pad_id=0, pad_multiple=16)]


def _losses(cfg, bundle, batches) -> list[float]:
    torch.manual_seed(0)
    trainer, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=100)
    return [train_step(trainer, [batches[i % len(batches)]])["loss"] for i in range(8)]


def test_compiled_layers_take_the_eager_steps_bit_for_bit_compile_once_and_leave_evaluation_alone():
    batches = _shapes()
    assert len({tuple(b["input_ids"].shape) for b in batches}) == 3
    cfg, plain = _bundle()  # LoRA dropout on: the random stream is the eager one too
    cfg_c, compiled = _bundle(compile=True)
    assert compile_layers_(compiled.model, backend="aot_eager") == len(decoder_layers(compiled.model)) == 2
    assert all(is_compiled(layer) for layer in decoder_layers(compiled.model))
    # evaluation first: its shapes and its pass without gradients compile nothing, and score alike
    g = torch.Generator().manual_seed(2)
    rows = [Encoded(tuple(torch.randint(3, 100, (n,), generator=g).tolist()), n % 3, i)
            for i, n in enumerate([5, 9, 17, 30, 12, 6, 25])]
    scorers = [trainer_for(c, b.model, b.label_ids, 10)[0].scorer for c, b in ((cfg, plain), (cfg_c, compiled))]
    assert (predict(scorers[1], rows, 3, pad_id=0) == predict(scorers[0], rows, 3, pad_id=0)).all()
    assert _graphs() == 0
    # training: the eager step's losses bit for bit (trainer_for keeps the layers compiled above); the
    # layers share one code object, so two graphs serve all layers and every batch shape: one for the
    # first layer (its input takes no gradient), one for the others
    assert _losses(cfg_c, compiled, batches) == _losses(cfg, plain, batches)
    assert _graphs() == 2


def test_the_tuner_leaves_compile_off_where_it_turns_checkpointing_on():
    cfg = dataclasses.replace(preset("tiny"), compile=True)
    assert Candidate(8, 1, gradient_checkpointing=False, bucketing=True).settings(cfg)["compile"] is True
    assert Candidate(8, 1, gradient_checkpointing=True, bucketing=True).settings(cfg)["compile"] is False
    cfg = dataclasses.replace(cfg, compile=False)
    assert Candidate(8, 1, gradient_checkpointing=False, bucketing=True).settings(cfg)["compile"] is False


def test_compile_with_gradient_checkpointing_is_one_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--compile",
                           "--gradient-checkpointing", "--output-dir", str(tmp_path / "run")],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--compile: not with --gradient-checkpointing" in lines[0], lines
    assert not (tmp_path / "run").exists()


def _steps(run) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["event"] == "step"]


def test_a_compiled_run_trains_as_the_uncompiled_one(tmp_path):
    """The command as a user runs it, inductor generating and compiling the kernels (into a fresh cache:
    the cold path) and the layers compiled for training only; the steps within float32 rounding of
    the uncompiled run's, which inductor's fused kernels sum in another order."""
    flags = ["--preset", "tiny", "--train-size", "64", "--validation-size", "32", "--test-size", "32",
             "--epochs", "1", "--quiet"]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    runs = {}
    for name, extra in (("plain", []), ("compiled", ["--compile"])):
        proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", *flags, *extra, "--output-dir",
                               str(tmp_path / name)], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[name] = tmp_path / name
    start = json.loads((runs["compiled"] / "metrics.jsonl").read_text().splitlines()[0])
    assert start["model"]["compiled"] is True and start["config"]["compile"] is True
    assert any((tmp_path / "inductor").iterdir())  # inductor cached what it compiled where it was told
    plain, compiled = _steps(runs["plain"]), _steps(runs["compiled"])
    assert len(plain) == len(compiled) == 4
    for a, b in zip(plain, compiled):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * abs(a["loss"]), (a["loss"], b["loss"])
