"""python -m nli_qlora.sweep: choose on validation only, resume without rerunning, stop cleanly,
record failures, and refuse bad specs in one line before any run starts.

Every run is a real `python -m nli_qlora.train` process on the tiny preset (a few seconds each)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nli_qlora.config import PRESETS, RunConfig
from nli_qlora.run.metrics import read_metrics
from nli_qlora.tools.sweep_runner import Slots
from nli_qlora.tools.sweep_spec import SPEC_DIR, find_spec, grid_from_flags, load_spec, stage_variants

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
SMALL = ["--preset", "tiny", "--epochs", "1", "--train-size", "200", "--validation-size", "120",
         "--min-validation-rows", "100"]


def sweep(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nli_qlora.sweep", *args], cwd=tmp, env=ENV,
                          capture_output=True, text=True)


def state(out: Path) -> dict:
    return json.loads((out / "sweep.json").read_text())


def splits_evaluated(run_dir: Path) -> set[str]:
    return {r["split"] for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "eval"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("sweep")
    proc = sweep(tmp, *SMALL, "--grid", "learning-rate=2e-3,2e-2", "--grid", "loss=label,answer",
                 "--jobs-per-device", "2", "--final-seeds", "1", "2", "--output-dir", "sw")
    return tmp / "sw", proc


def test_the_sweep_chooses_the_best_validation_score(finished):
    out, proc = finished
    assert proc.returncode == 0, proc.stderr
    s = state(out)
    names = [v["name"] for v in s["variants"]]
    assert names[:5] == ["base", "grid.2e-3.label", "grid.2e-3.answer", "grid.2e-2.label", "grid.2e-2.answer"]
    # the preset's learning rate and loss are the base's: one run, listed twice
    assert s["variants"][1]["same_as"] == "base" and s["variants"][1]["runs"] == s["variants"][0]["runs"]
    assert [run["run_dir"] for run in s["variants"][0]["runs"]] == ["base"]  # one seed: the config's
    scored = [v for v in s["variants"] if not v["name"].startswith("final.")]
    top = max(v["outcome"]["score"] for v in scored)
    chosen = next(v for v in scored if v["name"] == s["chosen"])
    assert chosen["outcome"]["score"] == top
    assert chosen is next(v for v in scored if v["outcome"]["score"] == top)  # ties: the first listed
    cfg = RunConfig.load(out / "chosen.json")
    assert cfg.learning_rate == (chosen["overrides"].get("learning_rate") or PRESETS["tiny"]().learning_rate)
    assert cfg.test_eval and cfg.output_dir is None and cfg.train_size == 200
    assert "**chosen**" in (out / "sweep.md").read_text()


def test_test_rows_are_read_only_by_the_final_runs(finished):
    out, _ = finished
    s = state(out)
    for v in s["variants"]:
        run = out / v["runs"][0]["run_dir"]
        if v["stage"] == "final":
            assert splits_evaluated(run) == {"validation", "test"}
        else:
            assert splits_evaluated(run) == {"validation"}, v["name"]
            assert RunConfig.load(run / "config.json").test_eval is False
    final = s["final"]
    assert [r["seed"] for r in final["runs"]] == [1, 2]
    afters = [r["outcome"]["test"]["after"] for r in final["runs"]]
    assert final["test_after"]["mean"] == pytest.approx(sum(afters) / 2)
    assert "mean **" in (out / "sweep.md").read_text()


def test_a_rerun_runs_nothing_again(finished, tmp_path):
    out, _ = finished
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.jsonl")}
    proc = sweep(out.parent, *SMALL, "--grid", "learning-rate=2e-3,2e-2", "--grid", "loss=label,answer",
                 "--jobs-per-device", "2", "--final-seeds", "1", "2", "--output-dir", "sw")
    assert proc.returncode == 0, proc.stderr
    assert "[1/" not in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.jsonl")} == before


def test_changed_settings_do_not_mix_with_an_old_sweep(finished):
    out, _ = finished
    proc = sweep(out.parent, *SMALL, "--grid", "learning-rate=2e-3", "--output-dir", "sw", "--train-size", "300")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "other base settings" in proc.stderr


def test_a_stopped_sweep_resumes_where_it_stopped(tmp_path):
    args = ["--preset", "tiny", "--epochs", "40", "--train-size", "160", "--validation-size", "30",
            "--min-validation-rows", "0", "--grid", "learning-rate=2e-3", "--output-dir", "sw"]
    proc = subprocess.Popen([sys.executable, "-m", "nli_qlora.sweep", *args], cwd=tmp_path, env=ENV,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "sw" / "base" / "metrics.jsonl"
    deadline = time.monotonic() + 300  # a bound against a hang, not a speed check
    while not (metrics.is_file() and any(r["event"] == "step" for r in read_metrics(metrics))):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "no step"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "run the same command again" in err
    assert state(tmp_path / "sw")["variants"][0]["outcome"]["status"] == "interrupted"
    assert (tmp_path / "sw" / "base" / "checkpoints").is_dir()

    again = sweep(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    records = read_metrics(metrics)
    assert [r["event"] for r in records].count("resume") == 1
    steps = [r["step"] for r in records if r["event"] == "step"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 40 * 10  # every step once
    assert state(tmp_path / "sw")["variants"][0]["outcome"]["status"] == "completed"


def test_seeds_give_each_variant_one_run_per_seed_scored_by_the_mean(tmp_path):
    args = ["--preset", "tiny", "--epochs", "1", "--train-size", "100", "--validation-size", "60",
            "--min-validation-rows", "0", "--grid", "learning-rate=2e-3", "--output-dir", "sw", "--seeds", "3", "4",
            "--jobs-per-device", "2"]
    proc = sweep(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    base = state(tmp_path / "sw")["variants"][0]
    assert [(r["seed"], r["run_dir"]) for r in base["runs"]] == [(3, "base.seed-3"), (4, "base.seed-4")]
    for r in base["runs"]:
        assert RunConfig.load(tmp_path / "sw" / r["run_dir"] / "config.json").seed == r["seed"]
    scores = [r["outcome"]["score"] for r in base["runs"]]
    assert base["outcome"]["score"] == pytest.approx(sum(scores) / 2) and base["outcome"]["scores"] == scores
    assert "by seed" in (tmp_path / "sw" / "sweep.md").read_text()

    other = sweep(tmp_path, *args[:-5], "--seeds", "3")
    assert other.returncode == 2 and "holds a sweep with seeds [3, 4]" in other.stderr


def test_a_failed_variant_is_recorded_and_not_rerun(tmp_path):
    args = [*SMALL, "--grid", "max-length=8,64", "--output-dir", "sw"]
    proc = sweep(tmp_path, *args)
    assert proc.returncode == 1, proc.stderr  # chosen among the runs that finished, and said so
    assert proc.stderr.splitlines()[-1].startswith("python -m nli_qlora.sweep: 1 run failed (grid.8)")
    s = state(tmp_path / "sw")
    failed = next(v for v in s["variants"] if v["name"] == "grid.8")
    assert failed["outcome"]["status"] == "failed" and "--max-length" in failed["outcome"]["error"]
    assert s["chosen"] in ("base", "grid.64")
    assert "grid.8: failed" in proc.stderr

    again = sweep(tmp_path, *args)
    assert again.returncode == 1 and "[1/" not in again.stderr
    retried = sweep(tmp_path, *args, "--retry-failed")
    assert "[1/1] grid.8: failed" in retried.stderr
    # a later command in the folder that does not run grid.8 is not failed by it
    other = sweep(tmp_path, *SMALL, "--grid", "max-length=64", "--output-dir", "sw")
    assert other.returncode == 0 and "[1/" not in other.stderr, other.stderr


BAD_SPECS = {
    "stages:\n  - name: a\n    grid: {learnig_rate: [1, 2]}\n": "stage 1 (a): unknown setting 'learnig_rate' (did you mean 'learning_rate'?)",
    "stages:\n  - name: a\n    grid: {learning_rate: [1e-4, x]}\n": "a.x: learning_rate: expected a number, got 'x'",
    "stages:\n  - name: a\n    grid: {lora: {r8: {lora_r: 0}}}\n": "a.r8: --lora-r: must be at least 1, got 0",
    "stages:\n  - name: a\n    grid: {test_eval: [true]}\n": "test_eval is set by the sweep itself",
    "stages:\n  - name: base\n    grid: {epochs: [1]}\n": "name 'base' must be unique",
    "stagez: []\n": "unknown key 'stagez'",
    "base: {learning_rate: fast}\nstages:\n  - name: a\n    grid: {epochs: [1]}\n": "base: learning_rate: expected a number, got 'fast'",
    "stages:\n  - name: a\n    grid: {prompt_template: ['{premise} {hypothesis}']}\n": "label '{premise} {hypothesis}'",
    "stages:\n  - name: a\n    grid: {1: [1]}\n": "unknown setting '1'",
    "1: 2\nstages: []\n": "unknown key '1'",
    "stages:\n  - name: a\n    grid: {learning-rate: [1e-3], learning_rate: [4e-3]}\n": "learning_rate is named twice",
    "stages:\n  - name: a\n    grid: {learning_rate: [1e-3], b: {b1: {learning_rate: 5e-3}}}\n":
        "b and learning_rate both set learning_rate",
    "stages:\n  - name: a\n    grid: {weight_decay: [0, 0.1], max_grad_norm: [1.5, 5]}\n": "both named a.0.1.5",
    "stages:\n  - name: grid\n    grid: {epochs: [1]}\n": "name 'grid' must be unique",
    "preset: nosuch\nstages:\n  - name: a\n    grid: {epochs: [1]}\n": "preset 'nosuch' is not a preset",
}


@pytest.mark.parametrize("text,message", list(BAD_SPECS.items()), ids=list(range(len(BAD_SPECS))))
def test_a_bad_spec_is_one_line_before_any_run(tmp_path, text, message):
    (tmp_path / "spec.yaml").write_text(text)
    proc = sweep(tmp_path, "--preset", "tiny", "--spec", "spec.yaml", "--output-dir", "sw", "--min-validation-rows", "0")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and "spec.yaml" in proc.stderr, proc.stderr
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("args,message", [
    (["--grid", "epochs=1", "--test-eval"], "--test-eval: a sweep never reads test rows"),
    (["--grid", "epochs=1", "--validation-size", "100"], "--validation-size: 100 rows choose by noise"),
    (["--grid", "epochs"], "--grid: expected SETTING=V1,V2"),
    (["--epochs", "2"], "nothing to sweep"),
    (["--spec", "no-such-spec"], "shipped: smollm2-full, smollm2-tuned"),
    (["--grid", "epochs=1", "--validation-file", "v.jsonl", "--test-file", "./v.jsonl"], "is also the test file"),
    (["--grid", "learning-rate=1e-3", "--grid", "learning_rate=2e-3"], "--grid: learning_rate is named twice"),
    (["--grid", "epochs=1", "--final-seeds", "1", "1"], "--final-seeds: each seed once"),
    (["--grid", "seed=7,8", "--seeds", "1", "2"], "grid: seed: sets seed, which --seeds"),
    (["--grid", "epochs=1", "--output-dir", "afile/sub"], "--output-dir: cannot create afile/sub"),
])
def test_sweep_flag_errors_are_one_line(tmp_path, args, message):
    (tmp_path / "afile").write_text("")
    proc = sweep(tmp_path, "--preset", "tiny", "--output-dir", "sw", *args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_grid_flags_take_true_and_false_for_a_yes_or_no_setting():
    stage = grid_from_flags(["double-quant=true,False"])
    variants = stage_variants(stage, {}, PRESETS["tiny"]().to_dict(), "--grid")
    assert [v.name for v in variants] == ["grid.true", "grid.false"]
    assert [v.settings["double_quant"] for v in variants] == [True, False]


def test_a_folder_without_its_state_never_lends_a_run_to_other_settings(finished, tmp_path):
    """sweep.json lost (or from an older version): the run folders are read again, and one that
    trained other settings is refused instead of reporting its score as this variant's."""
    out, _ = finished
    shutil.copytree(out, tmp_path / "sw")
    (tmp_path / "sw" / "sweep.json").unlink()
    proc = sweep(tmp_path, *SMALL, "--learning-rate", "1e-2", "--grid", "epochs=1", "--output-dir", "sw")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "holds a run with other settings than variant base" in proc.stderr
    again = sweep(tmp_path, *SMALL, "--grid", "learning-rate=2e-3,2e-2", "--grid", "loss=label,answer",
                  "--output-dir", "sw")  # the folder's own settings: every run found, none run again
    assert again.returncode == 0 and "[1/" not in again.stderr, again.stderr


def test_a_same_folder_reached_by_another_path_is_the_same_sweep(finished):
    out, _ = finished
    proc = sweep(Path("/"), *SMALL, "--grid", "learning-rate=2e-3,2e-2", "--grid", "loss=label,answer",
                 "--output-dir", str(out))
    assert proc.returncode == 0 and "[1/" not in proc.stderr, proc.stderr


def test_finals_belong_to_the_chosen_variant_and_a_new_choice_drops_the_old_table(tmp_path):
    first = sweep(tmp_path, *SMALL, "--grid", "epochs=1", "--final-seeds", "1", "--output-dir", "sw")
    assert first.returncode == 0, first.stderr
    s = state(tmp_path / "sw")
    assert s["chosen"] == "base" and [r["run_dir"] for r in s["final"]["runs"]] == ["final.base.seed-1"]
    later = sweep(tmp_path, *SMALL, "--grid", "learning-rate=1e-9", "--grid", "epochs=1,2", "--output-dir", "sw")
    assert later.returncode == 0, later.stderr
    s = state(tmp_path / "sw")
    if s["chosen"] == "base":  # the table still describes the chosen settings
        assert [r["run_dir"] for r in s["final"]["runs"]] == ["final.base.seed-1"]
    else:
        assert s["final"] is None and "Final:" not in (tmp_path / "sw" / "sweep.md").read_text()


def test_a_combination_made_impossible_by_an_earlier_choice_is_skipped_not_fatal(tmp_path):
    """Stage b's grad_accum 8 divides the base's batch 16, not the batch 12 that stage a chose (the
    base fails on its too short max_length, so a.b12 is chosen whatever the scores)."""
    (tmp_path / "spec.yaml").write_text(
        "base: {max_length: 8}\n"
        "stages:\n"
        "  - name: a\n    grid: {fix: {b12: {batch_size: 12, max_length: 64}}}\n"
        "  - name: b\n    grid: {grad_accum: [8]}\n")
    proc = sweep(tmp_path, *SMALL, "--spec", "spec.yaml", "--output-dir", "sw")
    assert proc.returncode == 1 and proc.stderr.splitlines()[-1].startswith(
        "python -m nli_qlora.sweep: 1 run failed (base)"), proc.stderr  # the base's failure, not the skip
    s = state(tmp_path / "sw")
    skipped = next(v for v in s["variants"] if v["name"] == "b.8")
    assert skipped["outcome"]["status"] == "skipped" and "--grad-accum" in skipped["outcome"]["error"]
    assert skipped["runs"] == [] and not (tmp_path / "sw" / "b.8").exists()
    assert "skipped b.8: " in proc.stderr and "| skipped: " in (tmp_path / "sw" / "sweep.md").read_text()
    assert s["chosen"] == "a.b12"
    again = sweep(tmp_path, *SMALL, "--spec", "spec.yaml", "--output-dir", "sw")  # the same choice, nothing run
    assert again.returncode == 1 and "[1/" not in again.stderr and state(tmp_path / "sw")["chosen"] == "a.b12"


@pytest.mark.parametrize("path", sorted(SPEC_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_spec_expands_to_valid_runs(path):
    spec = load_spec(find_spec(path.stem))
    assert spec.preset in PRESETS
    base = RunConfig.from_dict({**PRESETS[spec.preset]().to_dict(), **spec.base}).validate().to_dict()
    assert base["validation_size"] >= 2000 and base["test_size"] >= 2000
    for stage in spec.stages:
        for v in stage_variants(stage, {}, base, spec.source):
            assert v.settings["test_eval"] is False


def test_slots_pin_each_job_to_one_gpu():
    assert Slots.make(["0", "1"], 2).envs == [{"CUDA_VISIBLE_DEVICES": d} for d in "0011"]
    assert Slots.make(None, 3).envs == [{}, {}, {}]


RECORDS = REPO / "docs" / "results"
# where the data lies, names, and settings that change speed or memory but not what trains
# (the evaluation batch's default grew from 128 to 256 after these runs: issue 14)
NOT_SETTINGS = {"train_file", "validation_file", "test_file", "preset", "output_dir", "seed", "eval_batch_size"}


@pytest.mark.parametrize("preset,record", [
    ("smollm2-tuned", "sweep-smollm2-tuned/chosen.json"),
    ("smollm2-tuned", "sweep-smollm2-tuned/final-seed-1/config.json"),
    ("smollm2-full", "sweep-smollm2-full/final-seed-1/config.json"),
])
def test_the_shipped_presets_are_the_settings_measured_in_docs_results(preset, record):
    measured = RunConfig.load(RECORDS / record).to_dict()
    shipped = PRESETS[preset]().to_dict()
    assert {k: v for k, v in shipped.items() if k not in NOT_SETTINGS} == \
        {k: v for k, v in measured.items() if k not in NOT_SETTINGS}


def test_the_dashboard_lists_each_run_of_a_sweep_once_with_its_score(finished):
    from tui.run_index import scan

    out, _ = finished
    s = state(out)
    rows = scan(out)
    runs = {run["run_dir"]: (v, run) for v in s["variants"] if not v["same_as"] for run in v["runs"]}
    assert sorted(r.name for r in rows) == sorted(runs)  # twins add no row, every run directory one
    for r in rows:
        v, run = runs[r.name]
        assert r.score == run["outcome"]["score"]
        assert r.chosen == (v["name"] == s["chosen"])
