"""A whole tiny run through the command line: its files, its metrics schema, that it learns, that it
is deterministic, and that the report is rebuilt from the run directory alone.

One run (module scope) is shared by most tests; one more, shorter, checks determinism."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics_schema import LABELS, problems, run_problems
from nli_qlora.config import RunConfig, preset
from nli_qlora.run.metrics import read_metrics
from nli_qlora.run.report import render_markdown

REPO = Path(__file__).resolve().parents[1]
RECORDED = REPO / "tests" / "data" / "tiny_run_metrics.jsonl"
TINY = preset("tiny")


def train(run_dir: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nli_qlora.train", "--preset", "tiny", "--output-dir", str(run_dir),
                           "--quiet", *flags], capture_output=True, text=True, cwd=REPO)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("e2e") / "tiny"
    proc = train(run_dir)
    assert proc.returncode == 0, proc.stderr
    return run_dir, proc, read_metrics(run_dir / "metrics.jsonl")


def events(records: list[dict], name: str, **match) -> list[dict]:
    return [r for r in records if r["event"] == name and all(r.get(k) == v for k, v in match.items())]


# --- the process and its files ---------------------------------------------------------------------------

def test_the_tiny_run_exits_0_and_is_silent_with_quiet(run):
    _, proc, _ = run
    assert proc.returncode == 0
    assert proc.stdout == "" and proc.stderr == ""


def test_the_run_directory_holds_every_file(run):
    run_dir, _, _ = run
    for name in ("config.json", "metrics.jsonl", "report.md", "summary.json", "predictions/test-epoch0.jsonl",
                 "predictions/test-epoch3.jsonl"):
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch-1", "epoch-2", "epoch-3"]
    for epoch in (1, 2, 3):
        ckpt = run_dir / "checkpoints" / f"epoch-{epoch}"
        for name in ("adapter_model.safetensors", "adapter_config.json", "COMPLETE", "config.json"):
            assert (ckpt / name).is_file(), f"{ckpt.name}/{name}"
    assert not [p for p in run_dir.rglob("*") if p.name.startswith((".tmp", ".old"))], "no half-written leftovers"


def test_config_json_is_the_resolved_tiny_preset(run):
    run_dir, _, records = run
    cfg = RunConfig.load(run_dir / "config.json")
    assert cfg == RunConfig(**{**TINY.to_dict(), "output_dir": str(run_dir)})
    assert records[0]["config"] == json.loads((run_dir / "config.json").read_text())


def test_prediction_files_have_one_row_per_test_row(run):
    run_dir, _, _ = run
    for epoch in (0, 3):
        rows = [json.loads(line) for line in (run_dir / f"predictions/test-epoch{epoch}.jsonl").read_text().splitlines()]
        assert len(rows) == 300 and len({r["line"] for r in rows}) == 300
        assert all(r["gold"] in LABELS and r["predicted"] in LABELS for r in rows)
        assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-3 for r in rows)


def test_the_last_checkpoint_loads_with_peft_and_reproduces_the_final_predictions(run):
    """The checkpoint is the trained model: peft loads it onto the 4-bit tiny base, and the one
    scoring function then gives the run's own final test predictions."""
    from peft import PeftModel

    from nli_qlora.data.batches import encode
    from nli_qlora.data.read import load_split
    from nli_qlora.training.evaluate import predict
    from nli_qlora.model.load import load_base_model, load_tokenizer, resolve_source
    from nli_qlora.data.prompt import label_token_ids
    from nli_qlora.training.scoring import LabelScorer

    run_dir, _, _ = run
    cfg = RunConfig.load(run_dir / "config.json")
    source = resolve_source(cfg)
    tok = load_tokenizer(source)
    base = load_base_model(cfg, source, torch.device("cpu"), torch.float32)
    model = PeftModel.from_pretrained(base, str(run_dir / "checkpoints" / "epoch-3"))
    assert any("lora_A" in n for n, _ in model.named_parameters())
    examples, _ = load_split("test", cfg.test_file, cfg.dataset, cfg.test_size, False)
    rows, _ = encode(examples, tok, cfg.prompt_template, cfg.max_length, "test")
    logits = predict(LabelScorer(model, label_token_ids(tok, cfg.label_words)), rows, cfg.eval_batch_size,
                     tok.pad_token_id, cfg.pad_to_multiple)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    saved = [json.loads(line) for line in (run_dir / "predictions/test-epoch3.jsonl").read_text().splitlines()]
    assert [LABELS[i] for i in probs.argmax(1)] == [r["predicted"] for r in saved]
    expected = np.array([[r["probabilities"][k] for k in LABELS] for r in saved])
    assert np.abs(probs - expected).max() < 1e-3


# --- the metrics file follows docs/metrics.md --------------------------------------------------------------

def test_every_metrics_line_follows_the_schema_and_the_run_order(run):
    _, _, records = run
    assert run_problems(records) == []
    assert records[0]["event"] == "run_start" and records[-1]["event"] == "run_end"
    assert records[-1]["status"] == "completed" and records[-1]["error"] is None


def test_steps_run_one_to_n_through_every_epoch(run):
    _, _, records = run
    start, steps = records[0], events(records, "step")
    per_epoch = start["planned"]["steps_per_epoch"]
    assert per_epoch == 1200 // 16 == 75 and start["planned"]["total_steps"] == len(steps) == 225
    assert [s["step"] for s in steps] == list(range(1, 226))
    assert [(s["epoch"], s["epoch_step"]) for s in steps] == [(e, i) for e in (1, 2, 3) for i in range(1, 76)]
    assert sum(s["samples"] for s in steps) == start["planned"]["samples"] == 3 * 1200
    for s in steps:
        assert 0 < s["tokens"] <= s["padded_tokens"] and s["padded_tokens"] % TINY.pad_to_multiple == 0
        assert s["padding_fraction"] == round(1 - s["tokens"] / s["padded_tokens"], 4)
        assert 0 <= s["lr"] <= TINY.learning_rate and s["skipped"] is False and s["rss_gb"] > 0
        assert s["gpu_mem_allocated_gb"] is None and s["captured"] is False  # a CPU run
    lrs = [s["lr"] for s in steps]  # warm-up, then cosine decay to nothing
    assert lrs[:TINY.warmup_steps] == sorted(lrs[:TINY.warmup_steps]) and max(lrs) == pytest.approx(TINY.learning_rate)
    assert lrs[TINY.warmup_steps:] == sorted(lrs[TINY.warmup_steps:], reverse=True) and lrs[-1] < 1e-3 * max(lrs)


def test_evaluations_zero_shot_then_each_epoch_then_final_test(run):
    _, _, records = run
    evals = [(e["split"], e["epoch"], e["step"]) for e in events(records, "eval")]
    assert evals == [("validation", 0, 0), ("test", 0, 0), ("validation", 1, 75), ("validation", 2, 150),
                     ("validation", 3, 225), ("test", 3, 225)]
    for e in events(records, "eval"):
        assert e["rows"] == 300 and e["labels"] == LABELS
        assert e["predictions"] == (f"predictions/test-epoch{e['epoch']}.jsonl" if e["split"] == "test" else None)


def test_a_checkpoint_event_follows_each_epoch_once_it_is_on_disk(run):
    run_dir, _, records = run
    ckpts = events(records, "checkpoint")
    assert [(c["epoch"], c["step"], c["kind"]) for c in ckpts] == [(1, 75, "epoch"), (2, 150, "epoch"),
                                                                     (3, 225, "epoch")]
    assert [Path(c["path"]) for c in ckpts] == [run_dir / "checkpoints" / f"epoch-{e}" for e in (1, 2, 3)]
    lines = (run_dir / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    for c in ckpts:
        # taken right after that epoch's validation eval: a resume from it cuts the metrics file back to there
        i, taken = records.index(c), records.index(events(records, "eval", split="validation", epoch=c["epoch"])[0])
        state = json.loads((Path(c["path"]) / "state.json").read_text())
        assert state["step"] == c["step"] and state["metrics_offset"] == sum(map(len, lines[:taken + 1]))
        # announced once written on the worker thread, while the next steps (or the test eval) went on
        assert taken < i and all(r["event"] == "step" or r.get("split") == "test" for r in records[taken + 1:i])


def test_run_start_describes_the_run(run):
    run_dir, _, records = run
    start = records[0]
    assert start["run_name"] == "tiny" and start["run_dir"] == str(run_dir)
    assert start["model"] == {"name": "builtin:tiny-phi", "architecture": "PhiForCausalLM", "dtype": "float32",
                              "quantization": "nf4", "dequantized": False,
                              "lora_compute_dtype": "float32", "fused_lora": False, "fused_projections": False, "fused_norms": 0,
                              "fused_ropes": 0, "fused_swiglus": 0,
                              "compiled": False, "compiled_shapes": None}
    assert start["device"]["type"] == "cpu" and start["world_size"] == 1
    assert start["lora_targets"] == {"matched": list(TINY.target_modules), "unmatched": []}
    assert {k: (v["rows_read"], v["selected"], v["unlabeled_dropped"], v["bad_skipped"])
            for k, v in start["data"].items()} == {"train": (1200, 1200, 0, 0), "validation": (300, 300, 0, 0),
                                                   "test": (300, 300, 0, 0)}
    p = start["params"]
    assert 0 < p["trainable"] < p["total_packed"] < p["total"]
    assert [w["kind"] for w in events(records, "warning")] == ["paged_fallback"]


def test_the_run_visibly_learns(run):
    _, _, records = run
    before = events(records, "eval", split="test", epoch=0)[0]["balanced_accuracy"]
    after = events(records, "eval", split="test", epoch=3)[0]["balanced_accuracy"]
    assert before < 0.45 and after > 0.75 and after - before > 0.3
    losses = [s["loss"] for s in events(records, "step")]
    assert np.median(losses[-25:]) < 0.25 * np.median(losses[:25])


# --- the report --------------------------------------------------------------------------------------------

def test_the_report_has_every_section_with_the_metrics_files_numbers(run):
    run_dir, _, records = run
    report = (run_dir / "report.md").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    for section in ("## Accuracy before and after fine-tuning", "## Time taken", "## Parameters",
                    "## LoRA configuration", "## Resources", "## Failure cases corrected by fine-tuning",
                    "## Failure cases not corrected by fine-tuning"):
        assert section in report, section
    for name, epoch in (("before", 0), ("after", 3)):
        e = events(records, "eval", split="test", epoch=epoch)[0]
        assert summary[name]["balanced_accuracy"] == e["balanced_accuracy"]
        assert summary[name]["accuracy"] == e["accuracy"] and summary[name]["confusion"] == e["confusion"]
        assert (f"| {name} (test, epoch {epoch}) | 300 | {100 * e['balanced_accuracy']:.1f}% | "
                f"{100 * e['accuracy']:.1f}% | {e['loss']:.4f} |") in report
    p = records[0]["params"]
    assert summary["params"] == p
    assert f"- Trainable: {p['trainable']:,} of {p['total']:,} ({p['trainable_percent']:.2f}%)" in report
    assert f"{p['trainable']:,} of {p['total_packed']:,}" in report
    end, start = records[-1], records[0]
    assert re.search(r"- Wall time of the run: \d\d:\d\d:\d\d \(", report)
    assert summary["time"]["steps"] == 225
    assert summary["time"]["wall_s"] == round(end["time"] - start["time"], 3)
    # the whole command counts what came before run_start: at least the run's time, and its start is this process's
    assert summary["time"]["process_wall_s"] == end["process_wall_s"] >= summary["time"]["wall_s"]
    assert start["process_start"] <= start["time"]
    assert re.search(r"- Whole command, from process start: \d\d:\d\d:\d\d \(", report)
    # the start-up: every piece of setup in order, together the time from process start to run_start
    startup = start["startup"]
    assert list(startup) == ["imports_s", "device_s", "model_s", "data_s", "trainer_s", "resume_s"]
    assert abs(sum(startup.values()) - (start["time"] - start["process_start"])) < 0.05, startup
    assert summary["time"]["startup"] == startup and startup["imports_s"] > 0
    pieces = ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in startup.items())
    assert summary["time"]["startup_s"] == round(start["time"] - start["process_start"], 3)
    assert f"- Start-up, process start to the run's start: {summary['time']['startup_s']:.1f} s ({pieces})" in report
    first = events(records, "step")[0]["step_time_s"]
    assert summary["time"]["first_step_s"] == first
    assert f"- First training step (compilation, warm-up and graph capture included): {first:.1f} s" in report
    assert f"| r | {TINY.lora_r} |" in report and f"| alpha | {TINY.lora_alpha} |" in report
    assert f"| target modules (matched) | {', '.join(TINY.target_modules)} |" in report


def test_process_start_is_when_the_process_started_not_when_nli_qlora_was_imported():
    """The start-up figures count from process start: a process that waits 2 s before its first import
    reports at least those 2 s, and never a start after its own first statement."""
    code = ("import time; t0 = time.time(); time.sleep(2); from nli_qlora.infra.machine import process_start; "
            "print(t0 - process_start(), time.time() - process_start())")
    before_first, age = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True).stdout.split())
    assert before_first >= 0 and age >= 2.0


def test_the_rss_read_from_one_open_file_follows_the_process_and_a_forked_child_reads_its_own():
    """rss_gb keeps /proc/self/statm open and reads it again: 300 MB more must show, and a forked child,
    which inherits the descriptor of its parent's file, must read its own: what opening the file anew
    there reads, after the child took 300 MB of its own."""
    code = ("import os; from nli_qlora.infra.machine import rss_gb\n"
            "fresh = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**30\n"
            "a = rss_gb(); big = b'x' * (300 << 20); b = rss_gb(); pid = os.fork()\n"
            "if pid == 0:\n"
            "    more = b'y' * (300 << 20); os.write(1, f'{rss_gb()} {fresh()} '.encode()); os._exit(0)\n"
            "os.waitpid(pid, 0); print(a, b)")
    child, child_fresh, a, b = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                         check=True).stdout.split())
    assert b >= a + 0.25
    assert abs(child - child_fresh) < 0.02 and child_fresh > b + 0.1  # the parent's file would say about b


@pytest.mark.parametrize("uptime", ["0.50 0.40\n", "", "not a number\n"], ids=["younger-than-the-process", "empty", "garbage"])
def test_an_uptime_that_disagrees_with_the_process_gives_the_import_time(uptime, tmp_path):
    """A container may show its own /proc/uptime (younger than this process's start ticks, counted from the
    host's boot), or none that parses: the start is then when nli_qlora was imported, never a later time."""
    from nli_qlora import IMPORTED_AT
    from nli_qlora.infra.machine import process_start
    (tmp_path / "uptime").write_text(uptime)
    assert process_start(str(tmp_path / "uptime")) == IMPORTED_AT


def test_the_failure_cases_are_the_prediction_files_compared(run):
    run_dir, _, _ = run
    read = lambda e: {r["line"]: r for r in map(json.loads, (run_dir / f"predictions/test-epoch{e}.jsonl")  # noqa: E731
                                                 .read_text().splitlines())}
    before, after = read(0), read(3)
    corrected = [k for k in after if before[k]["predicted"] != before[k]["gold"] and after[k]["predicted"] == after[k]["gold"]]
    still = [k for k in after if before[k]["predicted"] != before[k]["gold"] and after[k]["predicted"] != after[k]["gold"]]
    summary = json.loads((run_dir / "summary.json").read_text())
    cases = summary["failure_cases"]
    assert cases["corrected"]["count"] == len(corrected) > 0
    assert cases["not_corrected"]["count"] == len(still)
    assert [r["line"] for r in cases["corrected"]["examples"]] == corrected[:len(cases["corrected"]["examples"])]
    report = (run_dir / "report.md").read_text()
    assert f"## Failure cases corrected by fine-tuning ({len(corrected)} rows)" in report
    first = cases["corrected"]["examples"][0]
    assert f"| {first['line']} | {first['premise']} | {first['hypothesis']} | {first['gold']} |" in report


def test_the_report_embeds_the_learning_curve_and_the_confusion_matrix(run):
    run_dir, _, _ = run
    report = (run_dir / "report.md").read_text()
    for name in ("learning_curve.png", "confusion_matrix.png"):
        assert f"]({name})" in report, name  # a relative link beside report.md
        data = (run_dir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 1_000_000, (name, len(data))
    assert json.loads((run_dir / "summary.json").read_text())["figures"] == ["learning_curve.png", "confusion_matrix.png"]


def test_without_matplotlib_the_report_says_how_to_get_the_pictures(run):
    run_dir, _, _ = run
    summary = json.loads((run_dir / "summary.json").read_text()) | {"figures": None}  # what write_report records then
    report = render_markdown(summary)
    assert "pip install matplotlib" in report and ".png)" not in report


def test_the_report_is_rebuilt_identically_from_the_run_directory_alone(run, tmp_path):
    """Only metrics.jsonl and the prediction files: no checkpoints, no model, no config.json."""
    run_dir, _, _ = run
    copy = tmp_path / "tiny"
    copy.mkdir()
    shutil.copy(run_dir / "metrics.jsonl", copy / "metrics.jsonl")
    shutil.copytree(run_dir / "predictions", copy / "predictions")
    proc = subprocess.run([sys.executable, "-m", "nli_qlora.report", str(copy)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert (copy / "report.md").read_text() == (run_dir / "report.md").read_text()
    assert (copy / "summary.json").read_text() == (run_dir / "summary.json").read_text()
    for name in ("learning_curve.png", "confusion_matrix.png"):  # the pictures too, drawn from the same records
        assert (copy / name).read_bytes() == (run_dir / name).read_bytes(), name


# --- determinism --------------------------------------------------------------------------------------------

def test_the_same_seed_gives_identical_losses(run, tmp_path):
    """A second run into another directory, without the zero-shot evaluations (they draw no random
    numbers): batches are a function of (seed, epoch), so every step must equal the first run's."""
    assert TINY.lora_dropout == 0.0
    _, _, records = run
    again = tmp_path / "again"
    proc = train(again, "--no-zero-shot-eval")
    assert proc.returncode == 0, proc.stderr
    first = [(s["loss"], s["grad_norm"], s["tokens"]) for s in events(records, "step")]
    second = [(s["loss"], s["grad_norm"], s["tokens"]) for s in events(read_metrics(again / "metrics.jsonl"), "step")]
    assert len(second) == 225 and second == first
    val = lambda recs: events(recs, "eval", split="validation", epoch=1)[0]["confusion"]  # noqa: E731
    assert val(read_metrics(again / "metrics.jsonl")) == val(records)


# --- the recorded run the dashboard's tests use -------------------------------------------------------------

def test_the_recorded_tiny_run_follows_the_current_schema():
    """tests/data/tiny_run_metrics.jsonl is a real tiny run (scripts/record_tiny_run.py regenerates it)."""
    records = [json.loads(line) for line in RECORDED.read_text().splitlines()]
    assert run_problems(records) == []
    assert records[0]["config"]["preset"] == "tiny" and records[-1]["status"] == "completed"


def test_the_schema_checker_rejects_what_the_document_forbids():
    step = {"event": "step", "schema": 1, "time": 1.0, "elapsed_s": 0.5}
    assert "step.loss: missing" in problems(step)
    bad = {"event": "run_end", "schema": 1, "time": 1.0, "elapsed_s": 2.0, "status": "done", "error": None}
    assert problems(bad) == ["run_end.log: missing"]
    bad["log"] = None
    assert problems(bad) == ["run_end.status: 'done' not one of ['completed', 'failed', 'interrupted']"]
    assert problems(bad | {"status": "completed", "process_wall_s": "3 s"}) == ["run_end.process_wall_s: '3 s' is not int/float"]
    assert problems({"event": "something_new", "schema": 1, "time": 1.0, "elapsed_s": 0.0}) == []


def test_lora_on_the_tied_head_of_smollm2_like_models_says_nothing_under_quiet_libraries():
    """SmolLM2 ties its head to its embedding and LoRA targets lm_head: peft warns about merging, which
    nli_qlora never does; `score --quiet` printed it on the GPU. The libraries quieted as every command
    quiets them, building such a model warns nothing."""
    import warnings

    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from nli_qlora.infra.quiet import quiet_libraries
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "lm_head"]))
    assert any("tie_word_embeddings" in str(w.message) for w in seen)  # what peft says unquieted
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_libraries()
        get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "lm_head"]))
    assert not [str(w.message) for w in seen]


def test_inductors_tf32_advice_says_nothing_under_quiet_libraries():
    """--compile on a GPU of sm_80 or later: inductor advises TF32 for float32 matmuls, once, printed
    under train --quiet on the H200. That path needs such a GPU; the message is taken from this torch's
    own source, so that a changed wording fails here rather than printing again."""
    import inspect
    import re
    import warnings

    from torch._inductor import compile_fx

    from nli_qlora.infra.quiet import quiet_libraries
    source = inspect.getsource(compile_fx._warn_tf32_disabled)
    message = "".join(re.findall(r'"([^"]*)"', source.split("warnings.warn(", 1)[1].split(")\n", 1)[0]))
    assert message.startswith("TensorFloat32 tensor cores for float32 matrix multiplication available")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_libraries()
        warnings.warn(message, UserWarning)
    assert not seen
