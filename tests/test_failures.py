"""Clear failures: every user or environment error is one line naming the culprit with exit status 2,
and nothing good on disk is lost.

- a full disk mid-run (a real tmpfs filled up) and a read-only or blocked output directory;
- non-finite losses forced for real (learning rate 1e4): skipped steps counted, then a stop that
  names the likely cause;
- CUDA out of memory: the policy (halve the micro-batch, keep the effective batch, the message with
  settings that fit), tested as the pure functions the loop applies;
- bad flags, values, files, models, label words and resume targets; a damaged checkpoint; a run
  directory in use by another process; a real bug, whose traceback goes to RUN_DIR/error.log.

Most cases call `nli_qlora.train.main` in this process (what `python -m nli_qlora.train` runs);
the ones that need a fresh interpreter (offline hub, the full disk mid-run) are subprocesses."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import mounted_tmpfs
import torch
from safetensors.torch import load_file

from nli_qlora.run import checkpoint as ckpt
from nli_qlora.infra import oom
from nli_qlora.config import RunConfig
from nli_qlora.run.metrics import read_metrics
from nli_qlora.cli.train import PROG, main

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
SMALL = ["--preset", "tiny", "--epochs", "1", "--train-size", "96", "--validation-size", "30", "--test-size", "30",
         "--lr-schedule", "constant", "--warmup-steps", "0"]  # the old tiny schedule: these tests force divergence


def one_error_line(capfd) -> str:
    """The whole stderr of a --quiet run: exactly one line, our program's, no traceback."""
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{PROG}: error: ")
    return lines[0]


# --- non-finite losses, forced for real ------------------------------------------------------------

@pytest.fixture(scope="module")
def diverged(tmp_path_factory) -> tuple[Path, int, str]:
    """Learning rate 1e4 with plain AdamW: step 2 blows the adapter up, every later loss is inf/nan."""
    run_dir = tmp_path_factory.mktemp("diverged") / "run"
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", *SMALL, "--no-zero-shot-eval", "--quiet",
                           "--learning-rate", "1e4", "--optimizer", "adamw", "--max-bad-steps", "3",
                           "--checkpoint-every-steps", "1", "--output-dir", str(run_dir)],
                          cwd=REPO, env=ENV, capture_output=True, text=True)
    return run_dir, proc.returncode, proc.stderr


def test_non_finite_losses_are_skipped_counted_and_stop_the_run_naming_the_cause(diverged):
    run_dir, code, stderr = diverged
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "3 non-finite losses in a row" in lines[0]
    assert "--learning-rate (now 10000)" in lines[0]
    records = read_metrics(run_dir / "metrics.jsonl")
    steps = [r for r in records if r["event"] == "step"]
    skipped = [r for r in steps if r["skipped"]]
    assert len(skipped) == 3 and steps[-3:] == skipped, "the last three steps were skipped, in a row"
    assert all(r["loss"] is None and r["grad_norm"] is None for r in skipped), "non-finite is written as null"
    assert not steps[0]["skipped"]
    end = records[-1]
    assert end["event"] == "run_end" and end["status"] == "failed" and end["skipped_steps"] == 3
    assert end["error"] in lines[0]


def test_skipped_steps_leave_the_adapter_weights_alone(diverged):
    """A skipped step updates nothing: the checkpoints after the last real update hold equal weights."""
    run_dir, _, _ = diverged
    records = read_metrics(run_dir / "metrics.jsonl")
    last_real = max(r["step"] for r in records if r["event"] == "step" and not r["skipped"])
    newest = ckpt.latest(run_dir)  # the failing step raises before its own checkpoint
    assert newest.name == f"step-{last_real + 2}"
    a = load_file(str(run_dir / "checkpoints" / f"step-{last_real}" / "adapter_model.safetensors"))
    b = load_file(str(newest / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- a full disk, a read-only or blocked directory -----------------------------------------------------

@pytest.fixture
def tmpfs(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "8m") as mount:
        yield mount


def fill(path: Path) -> None:
    """Write zeros into `path` until the file system is full."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass


def test_full_disk_mid_run_fails_cleanly_keeps_the_last_checkpoint_and_resumes(tmpfs):
    run_dir = tmpfs / "run"
    cmd = [sys.executable, "-m", "nli_qlora.train", *SMALL, "--epochs", "2", "--checkpoint-every-steps", "2",
           "--quiet", "--output-dir", str(run_dir)]
    err_file = tmpfs.parent / "stderr"
    with open(err_file, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stderr=err)
    metrics = run_dir / "metrics.jsonl"
    while not (metrics.is_file() and any(r["event"] == "step" and r["step"] >= 3 for r in read_metrics(metrics))):
        assert proc.poll() is None, err_file.read_text()
        time.sleep(0.05)
    fill(tmpfs / "filler")
    assert proc.wait() == 2
    lines = err_file.read_text().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{PROG}: error: cannot write ") and "No space left on device" in lines[0]
    assert str(run_dir) in lines[0] and f"--resume {run_dir}" in lines[0]

    good = ckpt.latest(run_dir)
    assert good is not None and good.name.startswith("step-")
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")], "no half checkpoint"
    state = torch.load(good / "trainer_state.pt", weights_only=False)
    assert state["position"]["step"] == int(good.name.split("-")[1])
    assert load_file(str(good / "adapter_model.safetensors"))
    records = read_metrics(metrics)
    if records[-1]["event"] == "run_end":  # written when the failed save's space came back
        assert records[-1]["status"] == "failed" and "No space left" in records[-1]["error"]

    (tmpfs / "filler").unlink()
    done = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--resume", str(run_dir), "--quiet"], cwd=REPO,
                          env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    steps = [r["step"] for r in read_metrics(metrics) if r["event"] == "step"]
    assert steps == list(range(1, 13)), "each of the 12 steps exactly once"


def test_checkpoint_directory_turning_read_only_mid_run_fails_cleanly_and_resumes(tmp_path):
    """checkpoints/ is its own tmpfs, remounted read-only between two saves (a mount with a file
    open for writing cannot be: the metrics file stays writable, so run_end `failed` is written)."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(run_dir / "checkpoints")],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        err_file = tmp_path / "stderr"
        with open(err_file, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "nli_qlora.train", *SMALL, "--checkpoint-every-steps", "2",
                                     "--quiet", "--output-dir", str(run_dir)], cwd=REPO, env=ENV, stderr=err)
        metrics = run_dir / "metrics.jsonl"
        while not (metrics.is_file() and any(r["event"] == "checkpoint" for r in read_metrics(metrics))):
            assert proc.poll() is None, err_file.read_text()
            time.sleep(0.05)
        while subprocess.run(["mount", "-o", "remount,ro", str(run_dir / "checkpoints")]).returncode != 0:
            time.sleep(0.01)  # busy while a save has a file open: try again between saves
        assert proc.wait() == 2
        lines = err_file.read_text().strip().splitlines()
        assert len(lines) == 1 and "Read-only file system" in lines[0], lines
        failed_at = lines[0].split("cannot write checkpoint ")[1].split(":")[0]
        good = ckpt.latest(run_dir)
        assert Path(failed_at).parent == good.parent and failed_at != str(good)
        assert f"continue from {good} with: {PROG} --resume {run_dir}" in lines[0]
        end = read_metrics(metrics)[-1]
        assert end["event"] == "run_end" and end["status"] == "failed" and "Read-only file system" in end["error"]

        subprocess.run(["mount", "-o", "remount,rw", str(run_dir / "checkpoints")], check=True)
        done = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--resume", str(run_dir), "--quiet"],
                              cwd=REPO, env=ENV, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert [r["step"] for r in read_metrics(metrics) if r["event"] == "step"] == list(range(1, 7))
    finally:
        subprocess.run(["umount", "-l", str(run_dir / "checkpoints")], capture_output=True)


def test_read_only_output_directory_is_one_line(tmpfs, capfd):
    run = tmpfs / "old-run"
    run.mkdir()
    RunConfig(preset="tiny").save(run / "config.json")
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    assert main([*SMALL, "--quiet", "--output-dir", str(tmpfs / "new-run")]) == 2
    line = one_error_line(capfd)
    assert f"{tmpfs / 'new-run'}" in line and "Read-only file system" in line
    assert main(["--resume", str(run), "--quiet"]) == 2
    line = one_error_line(capfd)
    assert str(run) in line and "Read-only file system" in line


def test_a_file_where_the_output_directory_should_be_is_one_line(tmp_path, capfd):
    (tmp_path / "file").write_text("in the way")
    assert main([*SMALL, "--quiet", "--output-dir", str(tmp_path / "file" / "run")]) == 2
    line = one_error_line(capfd)
    assert str(tmp_path / "file" / "run") in line and "Not a directory" in line


# --- CUDA out of memory: the policy ------------------------------------------------------------------

@pytest.mark.parametrize("batch, accum, expected", [(8, 1, 2), (8, 2, 4), (8, 4, 8), (8, 8, None), (12, 1, 2),
                                                     (12, 2, 4), (12, 4, 12), (6, 3, 6), (1, 1, None)])
def test_halving_the_micro_batch_keeps_the_effective_batch(batch, accum, expected):
    g = oom.halved_grad_accum(batch, accum)
    assert g == expected
    if g is not None:
        assert batch % g == 0, "the effective batch is unchanged"
        assert batch // g <= (batch // accum) // 2 or batch // g == 1, "the micro-batch at least halves"


def test_out_of_memory_with_auto_batch_retries_with_half_the_micro_batch():
    cfg = RunConfig(batch_size=8, grad_accum=1, auto_batch=True)
    retry = oom.train_oom(cfg, step=12, run_dir="runs/x")
    assert (retry.cfg.batch_size, retry.cfg.grad_accum, oom.micro_batch(retry.cfg)) == (8, 2, 4)
    assert dataclasses.replace(retry.cfg, grad_accum=1) == cfg, "nothing else changes"
    assert "step 12" in retry.message and "micro-batch 4 (--grad-accum 2)" in retry.message
    assert "effective batch stays 8" in retry.message
    retry = oom.train_oom(retry.cfg, step=12, run_dir="runs/x")
    assert oom.micro_batch(retry.cfg) == 2
    retry = oom.eval_oom(RunConfig(eval_batch_size=32, auto_batch=True), "validation", "runs/x")
    assert retry.cfg.eval_batch_size == 16


def test_out_of_memory_without_auto_batch_names_the_settings_that_fit():
    cfg = RunConfig(batch_size=8, grad_accum=1, gradient_checkpointing=False)
    with pytest.raises(oom.OutOfMemory) as err:
        oom.train_oom(cfg, step=3, run_dir="runs/r", total_memory_gb=79.3)
    message = str(err.value)
    assert "\n" not in message and err.value.exit_code == 2
    assert "micro-batch 8 (--batch-size 8 / --grad-accum 1)" in message
    assert "--grad-accum 2 (micro-batch 4, same effective batch)" in message
    assert "--gradient-checkpointing" in message and "--auto-batch" in message
    assert "python -m nli_qlora.train --resume runs/r --grad-accum 2 --gradient-checkpointing" in message
    assert "python -m nli_qlora.tune --config runs/r/config.json --memory-budget 79GB" in message


def test_out_of_memory_at_micro_batch_one_says_what_is_left():
    with pytest.raises(oom.OutOfMemory, match="micro-batch is already 1 row") as err:
        oom.train_oom(RunConfig(batch_size=4, grad_accum=4, gradient_checkpointing=True, auto_batch=True), 1, "r")
    assert "--max-length" in str(err.value)
    with pytest.raises(oom.OutOfMemory, match="--eval-batch-size 16"):
        oom.eval_oom(RunConfig(eval_batch_size=32), "test", "r")


def test_auto_batch_is_a_config_flag_off_by_default():
    from nli_qlora.cli.train import build_parser
    from nli_qlora.config import resolve
    assert RunConfig().auto_batch is False
    assert resolve(build_parser().parse_args(["--auto-batch"])).auto_batch is True


# --- user errors: one line naming the culprit, exit status 2 ----------------------------------------

@pytest.mark.parametrize("argv, named", [
    (["--no-such-flag"], "--no-such-flag"),
    (["--epochs", "0"], "--epochs"),
    (["--learning-rate", "fast"], "--learning-rate"),
    (["--batch-size", "8", "--grad-accum", "3"], "--grad-accum"),
    (["--train-file", "/no/such/train.jsonl"], "/no/such/train.jsonl"),
    (["--model", "/no/such/model-dir"], "/no/such/model-dir"),
    (["--label-words", " yes", " yes please", " no"], "--label-words"),
    (["--label-words", " yes", " no"], "--label-words"),
], ids=["unknown-flag", "bad-value", "bad-type", "grad-accum", "missing-file", "missing-model", "label-clash",
        "two-label-words"])
def test_user_errors_are_one_line_with_status_2(argv, named, tmp_path, capfd):
    try:
        code = main(["--preset", "tiny", "--quiet", "--output-dir", str(tmp_path / "run"), *argv])
    except SystemExit as exit:  # argparse's own errors: what `python -m` would exit with
        code = exit.code
    assert code == 2
    assert named in one_error_line(capfd)


def test_model_not_found_offline_is_one_line(tmp_path):
    """A hub id with no network (HF_HUB_OFFLINE=1) and nothing cached: the real CLI, a fresh process."""
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--quiet",
                           "--model", "no-such-org/no-such-model", "--output-dir", str(tmp_path / "run")],
                          cwd=REPO, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: --model")
    assert "no-such-org/no-such-model" in lines[0]


@pytest.fixture
def foreign_dirs(tmp_path) -> dict[str, Path]:
    empty = tmp_path / "empty"
    empty.mkdir()
    model = tmp_path / "a-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["PhiForCausalLM"], "model_type": "phi"}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    return {"missing": tmp_path / "nothing-here", "empty": empty, "model": model, "broken": broken}


@pytest.mark.parametrize("which, says", [("missing", "no such run directory"), ("empty", "no config.json"),
                                         ("model", "not a run directory of this toolkit"),
                                         ("broken", "not a run directory of this toolkit")])
def test_resume_of_something_that_is_not_a_run_is_one_line(foreign_dirs, which, says, capfd):
    assert main(["--resume", str(foreign_dirs[which]), "--quiet"]) == 2
    line = one_error_line(capfd)
    assert says in line and str(foreign_dirs[which]) in line


def test_resume_refuses_settings_that_change_the_training(diverged, capfd):
    run_dir, _, _ = diverged
    assert main(["--resume", str(run_dir), "--learning-rate", "1e-4", "--quiet"]) == 2
    assert "drop --learning-rate" in one_error_line(capfd)


def test_output_dir_holding_a_run_is_one_line(diverged, capfd):
    run_dir, _, _ = diverged
    assert main([*SMALL, "--quiet", "--output-dir", str(run_dir)]) == 2
    assert f"--resume {run_dir}" in one_error_line(capfd)


def test_run_directory_in_use_by_another_process_is_one_line(diverged, capfd):
    run_dir, _, _ = diverged
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; "
                               "from nli_qlora.run.lock import lock_run_dir; "
                               f"lock_run_dir(Path({str(run_dir)!r}), 'x'); print('locked', flush=True); "
                               "sys.stdin.read()"], cwd=REPO, env=ENV, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert main(["--resume", str(run_dir), "--quiet"]) == 2
        assert f"in use by process {holder.pid}" in one_error_line(capfd)
    finally:
        holder.stdin.close()
        holder.wait()


def test_damaged_checkpoint_names_the_file(diverged, tmp_path, capfd):
    run_dir = tmp_path / "run"
    shutil.copytree(diverged[0], run_dir, ignore=shutil.ignore_patterns(".lock"))
    newest = ckpt.latest(run_dir)
    (newest / "trainer_state.pt").write_bytes(b"not a torch file")
    assert main(["--resume", str(run_dir), "--quiet"]) == 2
    line = one_error_line(capfd)
    assert f"{newest / 'trainer_state.pt'} is damaged" in line and "move it aside" in line


def test_metrics_file_cut_below_the_checkpoint_is_one_line(diverged, tmp_path, capfd):
    run_dir = tmp_path / "run"
    shutil.copytree(diverged[0], run_dir, ignore=shutil.ignore_patterns(".lock"))
    (run_dir / "metrics.jsonl").write_text("")
    assert main(["--resume", str(run_dir), "--quiet"]) == 2
    assert "metrics.jsonl holds 0 bytes" in one_error_line(capfd)


# --- a real bug -----------------------------------------------------------------------------------

def test_a_bug_writes_its_traceback_to_error_log_and_one_line(tmp_path, capfd, monkeypatch):
    """A bug planted in the loop's evaluation (the only way to have one on purpose)."""
    from nli_qlora.training import recipe as loop

    def broken(self, split, epoch):
        return {}["no such key"]
    monkeypatch.setattr(loop.FineTune, "_evaluate", broken)
    run_dir = tmp_path / "run"
    assert main([*SMALL, "--quiet", "--output-dir", str(run_dir)]) == 1
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "internal error: KeyError" in lines[0] and f"{run_dir / 'error.log'}" in lines[0]
    log = (run_dir / "error.log").read_text()
    assert log.startswith("Traceback") and "broken" in log
    end = read_metrics(run_dir / "metrics.jsonl")[-1]
    assert end["status"] == "failed" and end["log"] == str(run_dir / "error.log")


def test_a_checkpoint_marked_complete_without_its_trainer_state_is_named_not_skipped(tmp_path):
    """COMPLETE is written last: a newest checkpoint that lost trainer_state.pt since is named in one
    line, never passed over for an older one without a word."""
    from nli_qlora.infra.errors import UserError

    for step in (2, 4):
        path = tmp_path / "checkpoints" / f"step-{step}"
        path.mkdir(parents=True)
        (path / "state.json").write_text(json.dumps({"step": step}))
        (path / "trainer_state.pt").write_bytes(b"")
        (path / "COMPLETE").write_text("")
    assert ckpt.latest(tmp_path).name == "step-4"
    (tmp_path / "checkpoints" / "step-4" / "trainer_state.pt").unlink()
    with pytest.raises(UserError, match=r"step-4 is marked complete but has no trainer_state.pt; move the checkpoint"):
        ckpt.latest(tmp_path)


@pytest.mark.parametrize("module", ["nli_qlora.train", "nli_qlora.score", "nli_qlora.tune", "nli_qlora.gguf"])
def test_a_torch_compiler_variable_that_is_not_a_number_is_one_line_naming_it(module, tmp_path):
    """TORCHINDUCTOR_COMPILE_THREADS= (set, empty) failed torch's compiler import inside transformers' lazy
    loader in every command, reported as "Could not import module 'BloomPreTrainedModel'". Each command
    names the variable in one line, status 2, before it writes anything."""
    args = {"nli_qlora.train": ["--preset", "tiny", "--output-dir", str(tmp_path / "run")],
            "nli_qlora.score": ["--preset", "tiny", "--input", "-"], "nli_qlora.tune": ["--preset", "tiny"],
            "nli_qlora.gguf": ["x.gguf"]}[module]
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": ""})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        f"python -m {module}: error: environment variable TORCHINDUCTOR_COMPILE_THREADS='' is not a whole number: "
        "torch reads it as one when it imports its compiler, which every command does; unset it or give a number"]
    assert not (tmp_path / "run").exists()
