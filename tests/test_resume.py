"""Runs that survive: SIGTERM, kill -9, a crash inside a checkpoint save, a kill between an epoch's
evaluation and its checkpoint, Ctrl-C (once and twice); each resumed run ends with the same adapter
weights, step records, evaluations, predictions and report as one uninterrupted run of the same
seed (bitwise, on CPU), and its metrics file holds every step exactly once.

All runs are real `python -m nli_qlora.train` processes on the tiny preset (2 epochs of 160 rows,
a checkpoint every 3 steps, LoRA dropout on so that the restored RNG state matters). The
uninterrupted reference and the crash run start at import of the module's fixtures and run
beside the other tests' processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nli_qlora.run import checkpoint as ckpt
from nli_qlora.run.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
TINY = ["--preset", "tiny", "--epochs", "2", "--train-size", "160", "--validation-size", "60", "--test-size", "60",
        "--checkpoint-every-steps", "3", "--lora-dropout", "0.1"]
STEPS = 20  # 160 rows / batch 16 = 10 steps an epoch
# one intra-op thread in every process: the same float reductions in each run, and runs side by side
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
POLL_S = 0.05


class Run:
    """One CLI process writing into `run_dir`, its stdout and stderr kept in files beside it."""

    def __init__(self, run_dir: Path, args: list[str], prefix: list[str] | None = None, env: dict | None = None):
        self.run_dir = run_dir
        self.log = run_dir.with_name(run_dir.name + f".{int(time.time() * 1e6)}.stderr")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = (prefix or [sys.executable, "-m", "nli_qlora.train"]) + args
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env or ENV, stdout=subprocess.DEVNULL, stderr=err)

    @classmethod
    def start(cls, run_dir: Path, *extra: str, env: dict | None = None) -> "Run":
        return cls(run_dir, TINY + ["--output-dir", str(run_dir), *extra], env=env)

    @classmethod
    def resume(cls, run_dir: Path, *extra: str, env: dict | None = None) -> "Run":
        return cls(run_dir, ["--resume", str(run_dir), *extra], env=env)

    def records(self) -> list[dict]:
        path = self.run_dir / "metrics.jsonl"
        return read_metrics(path) if path.is_file() else []

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, predicate, what: str) -> list[dict]:
        """Poll the metrics file until `predicate(records)` holds; the process must still be running."""
        while True:
            records = self.records()
            if predicate(records):
                return records
            if self.proc.poll() is not None:
                pytest.fail(f"the run exited ({self.proc.returncode}) before {what}:\n{self.stderr()}")
            time.sleep(POLL_S)

    def wait_for_step(self, n: int, after_resume: bool = False) -> None:
        def seen(records):
            if after_resume:
                last = max((i for i, r in enumerate(records) if r["event"] == "resume"), default=None)
                records = records[last:] if last is not None else []
            return any(r["event"] == "step" and r["step"] >= n for r in records)
        self.wait_until(seen, f"step {n}")

    def wait_for_stderr(self, text: str) -> None:
        while text not in self.stderr():
            if self.proc.poll() is not None:
                pytest.fail(f"the run exited ({self.proc.returncode}) before printing {text!r}:\n{self.stderr()}")
            time.sleep(POLL_S)

    def finish(self) -> int:
        return self.proc.wait()


def ok(run: Run) -> Run:
    assert run.finish() == 0, run.stderr()
    return run


# --- what "the same run" means --------------------------------------------------------------------

def step_rows(records: list[dict]) -> list[tuple]:
    return [(r["step"], r["epoch"], r["epoch_step"], r["loss"], r["lr"], r["grad_norm"], r["samples"], r["tokens"],
             r["skipped"]) for r in records if r["event"] == "step"]


def eval_rows(records: list[dict]) -> list[tuple]:
    return [(r["split"], r["epoch"], r["step"], r["loss"], r["accuracy"], r["balanced_accuracy"],
             json.dumps(r["confusion"]), r["predictions"]) for r in records if r["event"] == "eval"]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / "epoch-2" / "adapter_model.safetensors"))


def assert_same_run(resumed: Path, reference: Path) -> None:
    got, want = read_metrics(resumed / "metrics.jsonl"), read_metrics(reference / "metrics.jsonl")
    steps = [s[0] for s in step_rows(got)]
    assert steps == list(range(1, STEPS + 1)), "every step exactly once, in order"
    assert step_rows(got) == step_rows(want)
    assert eval_rows(got) == eval_rows(want)
    a, b = final_weights(resumed), final_weights(reference)
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a), "adapter weights bitwise equal"
    for name in ("test-epoch0.jsonl", "test-epoch2.jsonl"):
        assert (resumed / "predictions" / name).read_bytes() == (reference / "predictions" / name).read_bytes()
    s, r = (json.loads((d / "summary.json").read_text()) for d in (resumed, reference))
    for key in ("status", "before", "after", "validation", "failure_cases", "params", "data", "hyperparameters"):
        assert s[key] == r[key], key
    assert s["time"]["steps"] == STEPS
    assert [r["event"] for r in got].count("run_start") == 1 and got[-1]["event"] == "run_end"
    assert got[-1]["status"] == "completed"


# --- module fixtures: started early, awaited where needed ----------------------------------------

CRASH_ON_THIRD_SAVE = textwrap.dedent("""
    # kill -9 this process from inside the third checkpoint write (on its worker thread), after the
    # adapter files are written
    import os, signal, sys
    import peft
    from nli_qlora.cli.train import main
    original, calls = peft.LoraConfig.save_pretrained, []
    def save_then_die(self, *a, **kw):
        original(self, *a, **kw)
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    peft.LoraConfig.save_pretrained = save_then_die
    sys.exit(main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("resume")
    crash_dir = root / "crash"
    return {
        "reference": Run.start(root / "reference"),
        "crash": Run(crash_dir, TINY + ["--output-dir", str(crash_dir)],
                     prefix=[sys.executable, "-c", CRASH_ON_THIRD_SAVE]),
    }


@pytest.fixture(scope="module")
def reference(started) -> Path:
    return ok(started["reference"]).run_dir


@pytest.fixture(scope="module")
def lineage(started, tmp_path_factory) -> dict:
    """SIGTERM at step 4 -> resume -> kill -9 at step 14 -> resume to the end; snapshots of each stage."""
    run_dir = tmp_path_factory.mktemp("lineage") / "run"
    first = Run.start(run_dir)
    first.wait_for_step(4)
    first.proc.send_signal(signal.SIGTERM)
    out = {"run_dir": run_dir, "term_rc": first.finish(), "term_records": first.records(),
           "term_stderr": first.stderr(), "term_latest": ckpt.latest(run_dir)}
    second = Run.resume(run_dir)
    second.wait_for_step(14, after_resume=True)
    second.proc.kill()
    out["kill_rc"] = second.finish()
    out["kill_records"] = second.records()
    out["kill_latest"] = ckpt.latest(run_dir)
    out["final"] = ok(Run.resume(run_dir))
    return out


# --- SIGTERM ------------------------------------------------------------------------------------

def test_sigterm_saves_a_checkpoint_and_ends_interrupted(lineage):
    records = lineage["term_records"]
    assert lineage["term_rc"] == 130
    end = records[-1]
    assert end["event"] == "run_end" and end["status"] == "interrupted" and "SIGTERM" in end["error"]
    saved = [r for r in records if r["event"] == "checkpoint" and r["kind"] == "interrupt"]
    last_step = max(r["step"] for r in records if r["event"] == "step")
    assert len(saved) == 1 and saved[0]["step"] == last_step >= 4
    assert lineage["term_latest"].name == f"step-{last_step}"
    assert f"--resume {lineage['run_dir']}" in lineage["term_stderr"]
    assert "Traceback" not in lineage["term_stderr"]


# --- kill -9 ------------------------------------------------------------------------------------

def test_kill_9_leaves_the_last_checkpoint_and_resume_redoes_only_the_lost_steps(lineage):
    assert lineage["kill_rc"] == -signal.SIGKILL
    killed = lineage["kill_records"]
    assert killed[-1]["event"] != "run_end"
    killed_at = max(r["step"] for r in killed if r["event"] == "step")
    final = read_metrics(lineage["run_dir"] / "metrics.jsonl")
    resumes = [r for r in final if r["event"] == "resume"]
    assert [r["previous_status"] for r in resumes] == ["interrupted", "killed"]
    restored = resumes[1]
    assert lineage["kill_latest"].name.endswith(str(restored["step"]))
    assert restored["step"] <= killed_at and restored["discarded_steps"] == killed_at - restored["step"]
    assert resumes[0]["discarded_steps"] == 0
    i = final.index(restored)
    assert final[i - 1]["event"] == "checkpoint" and final[i - 1]["kind"] == "restored"
    assert final[i + 1]["event"] != "step" or final[i + 1]["step"] == restored["step"] + 1


def test_resumed_run_equals_the_uninterrupted_run(lineage, reference):
    assert_same_run(lineage["run_dir"], reference)
    assert [r["epoch"] for r in read_metrics(lineage["run_dir"] / "metrics.jsonl")
            if r["event"] == "eval"].count(0) == 2, "zero-shot evaluations are not redone"


def test_every_n_steps_and_epoch_checkpoints_never_save_one_step_twice(reference):
    records = read_metrics(reference / "metrics.jsonl")
    saved = [(r["kind"], r["step"]) for r in records if r["event"] == "checkpoint"]
    assert saved == [("steps", 3), ("steps", 6), ("steps", 9), ("epoch", 10), ("steps", 12), ("steps", 15),
                     ("steps", 18), ("epoch", 20)]
    names = sorted(p.name for p in (reference / "checkpoints").iterdir())
    assert names == sorted(["step-3", "step-6", "step-9", "epoch-1", "step-12", "step-15", "step-18", "epoch-2"])
    assert all(ckpt.is_complete(reference / "checkpoints" / n) for n in names)


# --- a crash inside a checkpoint save -----------------------------------------------------------

def test_crash_during_a_checkpoint_save_keeps_the_previous_one_loadable(started, reference):
    crash = started["crash"]
    assert crash.finish() == -signal.SIGKILL
    run_dir = crash.run_dir
    half = [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".tmp-step-9-")]
    assert len(half) == 1 and not (half[0] / "COMPLETE").exists(), "the third save died half way"
    previous = ckpt.latest(run_dir)
    assert previous.name == "step-6"

    from peft import PeftModel, get_peft_model_state_dict

    from nli_qlora.config import RunConfig
    from nli_qlora.model.load import load_base_model, resolve_source
    cfg = RunConfig.load(previous / "config.json")
    base = load_base_model(cfg, resolve_source(cfg), torch.device("cpu"), torch.float32)
    model = PeftModel.from_pretrained(base, str(previous))
    saved = load_file(str(previous / "adapter_model.safetensors"))
    loaded = get_peft_model_state_dict(model, save_embedding_layers=False)
    assert saved and saved.keys() == loaded.keys() and all(torch.equal(loaded[k], v) for k, v in saved.items())

    resumed = ok(Run.resume(run_dir))
    assert "removed" in resumed.stderr()
    assert not any(p.name.startswith(".") for p in (run_dir / "checkpoints").iterdir()), "leftovers cleaned"
    assert_same_run(run_dir, reference)


# --- a kill between an epoch's evaluation and its checkpoint ------------------------------------

def test_kill_between_epoch_eval_and_its_checkpoint_redoes_the_eval_once(reference, tmp_path):
    """The state such a kill leaves, built from the reference run: the metrics file ends with epoch
    2's validation record, epoch-2 is still a half-written .tmp directory, no report yet."""
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir, ignore=shutil.ignore_patterns(".lock"))
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"event": "eval"' in line and '"split": "validation"' in line
               and json.loads(line)["epoch"] == 2)
    metrics.write_text("".join(lines[:cut + 1]))
    os.rename(run_dir / "checkpoints" / "epoch-2", run_dir / "checkpoints" / ".tmp-epoch-2-x1y2")
    (run_dir / "checkpoints" / ".tmp-epoch-2-x1y2" / "COMPLETE").unlink()
    for name in ("report.md", "summary.json", "predictions/test-epoch2.jsonl"):
        (run_dir / name).unlink()
    assert ckpt.latest(run_dir).name == "step-18"

    ok(Run.resume(run_dir))
    assert_same_run(run_dir, reference)
    records = read_metrics(metrics)
    assert sum(r["event"] == "eval" and r["split"] == "validation" and r["epoch"] == 2 for r in records) == 1
    assert [r for r in records if r["event"] == "resume"][0]["discarded_steps"] == 2


# --- a completed run --------------------------------------------------------------------------

def test_resume_of_a_completed_run_says_so_and_rebuilds_a_missing_report(reference, tmp_path, capfd):
    from nli_qlora.cli.train import main
    run_dir = tmp_path / "done"
    shutil.copytree(reference, run_dir, ignore=shutil.ignore_patterns(".lock"))
    before = (run_dir / "metrics.jsonl").read_bytes()
    (run_dir / "report.md").unlink()
    assert main(["--resume", str(run_dir)]) == 0
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already completed" in err[0] and "report rebuilt" in err[0]
    assert (run_dir / "report.md").read_text() == (reference / "report.md").read_text()
    assert (run_dir / "metrics.jsonl").read_bytes() == before, "nothing appended"

    assert main(["--resume", str(run_dir)]) == 0
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already completed" in err[0] and "rebuilt" not in err[0]


# --- Ctrl-C -----------------------------------------------------------------------------------

SLOW_ZERO_SHOT = ["--validation-size", "0", "--eval-batch-size", "1", "--train-size", "48", "--epochs", "1"]


def test_ctrl_c_during_zero_shot_saves_step_0_and_resume_does_not_redo_it(tmp_path):
    run_dir = tmp_path / "run"
    run = Run.start(run_dir, *SLOW_ZERO_SHOT)
    run.wait_until(lambda rs: any(r["event"] == "run_start" for r in rs), "run_start")
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130, run.stderr()
    records = run.records()
    assert records[-1]["status"] == "interrupted"
    assert [(r["kind"], r["step"]) for r in records if r["event"] == "checkpoint"] == [("interrupt", 0)]
    assert [r["epoch"] for r in records if r["event"] == "eval"] == [0, 0]

    ok(Run.resume(run_dir, "--eval-batch-size", "64"))  # a setting a resume may change
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["kind"] for r in records if r["event"] == "warning"][-1] == "resume_setting"
    assert [(r["split"], r["epoch"]) for r in records if r["event"] == "eval"] == [
        ("validation", 0), ("test", 0), ("validation", 1), ("test", 1)]
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2, 3]


def test_a_stop_during_an_epochs_evaluation_waits_for_its_checkpoint_and_stops_on_it(tmp_path):
    """The epoch checkpoint after that evaluation is written on the worker thread (run.saving); the
    stop must wait for it, record it, and stop on it rather than take a second one at the same step."""
    run_dir = tmp_path / "run"
    slow_eval = ["--preset", "tiny", "--epochs", "2", "--train-size", "160", "--validation-size", "120",
                 "--test-size", "20", "--eval-batch-size", "1", "--output-dir", str(run_dir)]
    run = Run(run_dir, slow_eval)
    run.wait_for_step(10)  # the epoch's last step: its validation (120 batches of one row) runs now
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 130, run.stderr()
    records = run.records()
    assert [(r["kind"], r["step"]) for r in records if r["event"] == "checkpoint"] == [("epoch", 10)]
    assert records[-2]["event"] == "checkpoint" and records[-1]["status"] == "interrupted"
    assert ckpt.latest(run_dir) == run_dir / "checkpoints" / "epoch-1"
    assert not any(p.name.startswith(".") for p in (run_dir / "checkpoints").iterdir())
    assert f"checkpoint {run_dir / 'checkpoints' / 'epoch-1'}" in run.stderr()

    ok(Run.resume(run_dir))
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records if r["event"] == "step"] == list(range(1, 21))
    assert records[-1]["status"] == "completed"


def test_second_ctrl_c_stops_at_once(tmp_path):
    run_dir = tmp_path / "run"
    run = Run.start(run_dir, *SLOW_ZERO_SHOT)
    run.wait_until(lambda rs: any(r["event"] == "run_start" for r in rs), "run_start")
    run.proc.send_signal(signal.SIGINT)
    run.wait_for_stderr("press Ctrl-C again to stop at once")
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130
    records = run.records()
    assert records[-1]["event"] == "run_end" and records[-1]["status"] == "interrupted"
    assert "second Ctrl-C" in records[-1]["error"]
    assert not any(r["event"] == "step" for r in records)
    assert ckpt.latest(run_dir) is None
    assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())
    err = run.stderr()
    assert "Traceback" not in err and "starts over" in err.strip().splitlines()[-1]


def test_stop_flag_semantics_with_real_signals():
    """In this process: immediate during setup, a flag at first when graceful, at once on a second Ctrl-C."""
    from nli_qlora.infra.interrupt import StopFlag, StopNow
    said, before = [], signal.getsignal(signal.SIGINT)
    flag = StopFlag(announce=said.append).install()
    try:
        with pytest.raises(StopNow):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode; the sleep is never reached in full
        flag.requested, flag.mode = None, "graceful"
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.requested == "SIGTERM" and len(said) == 1
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM changes nothing
        with pytest.raises(StopNow, match="second Ctrl-C"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        flag.mode = "noted"
        os.kill(os.getpid(), signal.SIGINT)  # past the last checkpoint: noted only
    finally:
        flag.uninstall()
    assert signal.getsignal(signal.SIGINT) is before


HANGUP = textwrap.dedent("""
    import os, signal, sys
    from nli_qlora.infra.interrupt import StopFlag
    flag = StopFlag().install()
    flag.mode = "graceful"
    print("before", flush=True)
    os.kill(os.getpid(), signal.SIGHUP)
    print("after: the terminal is gone", flush=True)
    print("after", file=sys.stderr, flush=True)
    open(sys.argv[1], "w").write(str(flag.requested))
""")


@pytest.mark.parametrize("ignored", [False, True], ids=["terminal-closed", "under-nohup"])
def test_sighup_is_a_graceful_stop_unless_ignored(tmp_path, ignored):
    """The terminal closing asks for a checkpoint-and-stop, and output stops going to the dead
    terminal; a run started under nohup (SIGHUP ignored) keeps running."""
    result = tmp_path / "requested"
    nohup = (lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if ignored else None
    proc = subprocess.run([sys.executable, "-c", HANGUP, str(result)], cwd=REPO, env=ENV, capture_output=True,
                          text=True, preexec_fn=nohup)
    assert proc.returncode == 0, proc.stderr
    if ignored:
        assert result.read_text() == "None" and "after" in proc.stdout
    else:
        assert result.read_text() == "SIGHUP"
        assert proc.stdout == "before\n" and "after" not in proc.stderr


# --- the data a resume trains on --------------------------------------------------------------------

def test_resume_refuses_data_files_that_changed_since_the_run_started(tmp_path):
    """The checkpoint's position, the learning-rate schedule and the before/after test scores all
    count the rows the run started on: a file cut or edited since is one line, exit 2, and the run
    resumes once the file is back."""
    from nli_qlora.data.builtin import tiny_split

    files = {}
    for split in ("train", "validation", "test"):
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in tiny_split(split)))
    original = files["train"].read_text()
    data = ["--train-file", str(files["train"]), "--validation-file", str(files["validation"]),
            "--test-file", str(files["test"])]
    first = Run.start(tmp_path / "run", *data)
    first.wait_for_step(4)
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == 130, first.stderr()
    end = first.records()[-1]

    rows = [json.loads(line) for line in original.splitlines()]
    edits = {"cut": rows[:100],  # fewer rows than --train-size 160 selects
             "edited": [{**r, "hypothesis": r["hypothesis"].upper()} for r in rows]}  # same count, other text
    for kind, changed in edits.items():
        files["train"].write_text("".join(json.dumps(r) + "\n" for r in changed))
        again = Run.resume(tmp_path / "run")
        assert again.finish() == 2, again.stderr()
        line = again.stderr().strip().splitlines()[-1]
        assert line.startswith(f"python -m nli_qlora.train: error: --resume: the train data changed since the run "
                               f"started ({files['train']}: "), line
        assert ("other in content" in line) == (kind == "edited"), line
        assert again.records()[-1] == end, "nothing written: the run stays resumable"

    files["train"].write_text(original)
    done = ok(Run.resume(tmp_path / "run"))
    assert done.records()[-1]["status"] == "completed"
