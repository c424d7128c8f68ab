"""Data parallel under torchrun, on the CPU with gloo: two processes train what one does.

Real `torchrun --standalone --nproc_per_node 2 -m nli_qlora.train` runs on the tiny preset (2 epochs
of 160 rows, global batch 16, no LoRA dropout so that both layouts draw no random numbers), against
a plain one-process run of the same seed. The comparisons use 32-bit AdamW: with the 8-bit one, a
1e-7 difference in a summed gradient can move a state element across a quantization step, and the
weights then differ by up to 1e-3 relative (measured) for reasons that are not data parallelism's;
the killed-rank run uses the default paged 8-bit AdamW. What must hold: the same steps, losses, evaluations and
(within float tolerance) adapter weights; rank 0 alone writes; a stop under torchrun resumes alone
and a stop alone resumes under torchrun; a rank killed with -9 ends the run with a loadable
checkpoint and no process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nli_qlora.run import checkpoint as ckpt
from nli_qlora.run.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
TINY = ["--preset", "tiny", "--epochs", "2", "--train-size", "160", "--validation-size", "60", "--test-size", "60",
        "--lora-dropout", "0", "--optimizer", "adamw"]
STEPS = 20
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "nli_qlora.train"]
ALONE = [sys.executable, "-m", "nli_qlora.train"]


class Run:
    """A CLI process (torchrun or plain) in its own process group, as a job scheduler starts one."""

    def __init__(self, run_dir: Path, launcher: list[str], args: list[str], env: dict | None = None):
        self.run_dir = run_dir
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log = run_dir.with_name(f"{run_dir.name}.{int(time.time() * 1e6)}.stderr")
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(launcher + args, cwd=REPO, env={**ENV, **(env or {})}, stdout=subprocess.DEVNULL,
                                         stderr=err, start_new_session=True)

    @classmethod
    def start(cls, run_dir: Path, launcher: list[str], *extra: str) -> "Run":
        return cls(run_dir, launcher, TINY + ["--output-dir", str(run_dir), *extra])

    @classmethod
    def resume(cls, run_dir: Path, launcher: list[str]) -> "Run":
        return cls(run_dir, launcher, ["--resume", str(run_dir)])

    def records(self) -> list[dict]:
        path = self.run_dir / "metrics.jsonl"
        return read_metrics(path) if path.is_file() else []

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_step(self, n: int) -> None:
        while not any(r["event"] == "step" and r["step"] >= n for r in self.records()):
            if self.proc.poll() is not None:
                pytest.fail(f"the run exited ({self.proc.returncode}) before step {n}:\n{self.stderr()}")
            time.sleep(0.05)

    def workers(self) -> dict[int, int]:
        """{rank: pid} of torchrun's worker processes."""
        out = {}
        for pid in subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split():
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            ranks = [e[5:] for e in env if e.startswith(b"RANK=")]
            if ranks:
                out[int(ranks[0])] = int(pid)
        return out

    def finish(self) -> int:
        return self.proc.wait()


def ok(run: Run) -> Path:
    assert run.finish() == 0, run.stderr()
    return run.run_dir


def steps(records: list[dict]) -> list[tuple]:
    return [(r["step"], r["epoch"], r["epoch_step"], r["samples"], round(r["loss"], 4)) for r in records
            if r["event"] == "step"]


def evals(records: list[dict]) -> list[tuple]:
    return [(r["split"], r["epoch"], r["rows"], r["balanced_accuracy"], json.dumps(r["confusion"]))
            for r in records if r["event"] == "eval"]


def assert_same_training(got_dir: Path, want_dir: Path) -> None:
    got, want = read_metrics(got_dir / "metrics.jsonl"), read_metrics(want_dir / "metrics.jsonl")
    assert [s[0] for s in steps(got)] == list(range(1, STEPS + 1)), "every step exactly once, in order"
    assert steps(got) == steps(want)
    assert evals(got) == evals(want)
    a, b = (load_file(str(d / "checkpoints" / "epoch-2" / "adapter_model.safetensors")) for d in (got_dir, want_dir))
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    for name in ("test-epoch0.jsonl", "test-epoch2.jsonl"):
        g = [json.loads(line) for line in (got_dir / "predictions" / name).read_text().splitlines()]
        w = [json.loads(line) for line in (want_dir / "predictions" / name).read_text().splitlines()]
        assert [(r["line"], r["predicted"]) for r in g] == [(r["line"], r["predicted"]) for r in w]
    assert got[-1]["event"] == "run_end" and got[-1]["status"] == "completed"


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> dict[str, Run]:
    """The two complete runs, side by side from the start."""
    root = tmp_path_factory.mktemp("dp")
    return {"alone": Run.start(root / "alone", ALONE), "two": Run.start(root / "two", TORCHRUN)}


@pytest.fixture(scope="module")
def alone(started) -> Path:
    return ok(started["alone"])


@pytest.fixture(scope="module")
def two(started) -> tuple[Path, str]:
    run = started["two"]
    return ok(run), run.stderr()


def test_two_processes_train_what_one_does(two, alone):
    assert_same_training(two[0], alone)


def test_rank_zero_alone_writes(two, alone):
    run_dir, stderr = two
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["event"] for r in records].count("run_start") == 1
    assert records[0]["world_size"] == 2
    assert all(r["samples"] == 16 for r in records if r["event"] == "step"), "samples are the global batch"
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")) == \
        sorted(p.relative_to(alone).as_posix() for p in alone.rglob("*"))
    assert "[rank 1]" not in stderr and "Traceback" not in stderr


def test_a_stop_under_torchrun_resumes_in_one_process(alone, tmp_path):
    first = Run.start(tmp_path / "run", TORCHRUN)
    first.wait_for_step(4)
    os.killpg(first.proc.pid, signal.SIGTERM)  # what a scheduler does: every process of the job
    first.finish()
    end = first.records()[-1]
    assert end["event"] == "run_end" and end["status"] == "interrupted", first.stderr()
    assert ckpt.latest(first.run_dir) is not None
    ok(Run.resume(first.run_dir, ALONE))
    assert_same_training(first.run_dir, alone)


def test_a_stop_in_one_process_resumes_under_torchrun(alone, tmp_path):
    first = Run.start(tmp_path / "run", ALONE)
    first.wait_for_step(4)
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == 130
    resumed = Run.resume(first.run_dir, TORCHRUN)
    ok(resumed)
    assert_same_training(first.run_dir, alone)
    resume = [r for r in read_metrics(first.run_dir / "metrics.jsonl") if r["event"] == "resume"]
    assert len(resume) == 1 and "[rank 1]" not in resumed.stderr()


def test_a_killed_rank_ends_the_run_with_a_loadable_checkpoint(tmp_path):
    run = Run.start(tmp_path / "run", TORCHRUN, "--checkpoint-every-steps", "3", "--optimizer", "paged_adamw_8bit")
    run.wait_for_step(4)
    workers = run.workers()
    assert set(workers) == {0, 1}
    os.kill(workers[1], signal.SIGKILL)
    assert run.finish() != 0
    for pid in workers.values():  # torchrun waited for (or ended) both workers: nothing hangs on
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    end = run.records()[-1]
    assert end["event"] == "run_end" and end["status"] == "failed"
    assert "another process of this run ended" in end["error"]
    stderr = run.stderr()
    assert "[rank 0] error: another process of this run ended" in stderr
    assert f"--resume {run.run_dir}" in stderr
    latest = ckpt.latest(run.run_dir)
    assert latest is not None and int(latest.name.split("-")[1]) >= 3
    ok(Run.resume(run.run_dir, ALONE))  # and it continues from there to the end
    assert read_metrics(run.run_dir / "metrics.jsonl")[-1]["status"] == "completed"


def test_a_batch_smaller_than_the_world_and_the_eager_step_with_micro_batches(tmp_path):
    """49 rows in batches of 16: the last batch has one row, so rank 1 has none and still takes part;
    the eager step with two micro-batches per rank; 21 evaluation rows split 11/10."""
    args = ["--preset", "tiny", "--epochs", "1", "--train-size", "49", "--validation-size", "21", "--test-size", "21",
            "--step-mode", "eager", "--grad-accum", "2", "--optimizer", "adamw"]
    runs = [Run(tmp_path / name, launcher, args + ["--output-dir", str(tmp_path / name)])
            for name, launcher in (("two", TORCHRUN), ("alone", ALONE))]
    two, alone = (read_metrics(ok(run) / "metrics.jsonl") for run in runs)
    assert [s[3] for s in steps(two)] == [16, 16, 16, 1]
    assert steps(two) == steps(alone)
    assert evals(two) == evals(alone) and all(e[2] == 21 for e in evals(two))


def test_a_broken_torchrun_environment_is_one_line(monkeypatch, capsys):
    """WORLD_SIZE without a RANK (a hand-made environment, not torchrun's): exit 2, one line, for the
    run and for the dry run alike."""
    from nli_qlora.cli.train import main
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    for extra in ([], ["--dry-run"]):
        assert main(["--preset", "tiny", "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "WORLD_SIZE='2' with RANK=None" in err and "torchrun" in err, err


def test_two_processes_queue_each_next_step_as_one_does(tmp_path):
    """The fast step's next forward and backward queued before the read-back (training.step.queue_next) under
    torchrun: it takes the 8-bit AdamW kernel's update, here in Triton's interpreter (NLI_QLORA_KERNEL_UPDATE=1),
    so the 8-bit states' quantization steps allow the losses to differ in their fourth digit (see above)."""
    kernel = {"NLI_QLORA_KERNEL_UPDATE": "1", "TRITON_INTERPRET": "1"}
    args = TINY + ["--optimizer", "paged_adamw_8bit"]
    runs = [Run(tmp_path / name, launcher, args + ["--output-dir", str(tmp_path / name)], env=kernel)
            for name, launcher in (("two", TORCHRUN), ("alone", ALONE))]
    two, alone = (read_metrics(ok(run) / "metrics.jsonl") for run in runs)
    for records in (two, alone):
        assert [r["queued"] for r in records if r["event"] == "step"] == [i % 10 != 0 for i in range(STEPS)]
    assert [s[:4] for s in steps(two)] == [s[:4] for s in steps(alone)]
    got, want = ([r["loss"] for r in records if r["event"] == "step"] for records in (two, alone))
    assert got == pytest.approx(want, rel=1e-3)
    assert two[-1]["status"] == "completed"
