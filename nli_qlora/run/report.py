"""report.md and summary.json, rebuilt from a run directory alone (metrics.jsonl + prediction files).

Every section of the published report, filled from measurements:
    python -m nli_qlora.report RUN_DIR"""

from __future__ import annotations

import json
from pathlib import Path

from nli_qlora.infra.atomic import write_text
from nli_qlora.run.figure_worker import FigureWorker
from nli_qlora.run.figures import MISSING, final_test, write_figures
from nli_qlora.run.metrics import read_metrics
from nli_qlora.run.predictions import failure_cases, read_predictions

EXAMPLES_PER_CASE = 5


def hms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def summarize_run(run_dir: Path, records: list[dict] | None = None) -> dict:
    if records is None:
        records = read_metrics(run_dir / "metrics.jsonl")
    start = next((r for r in records if r["event"] == "run_start"), None)
    if start is None:
        raise ValueError(f"{run_dir}/metrics.jsonl has no run_start record")
    end = next((r for r in reversed(records) if r["event"] == "run_end"), None)
    evals = [r for r in records if r["event"] == "eval"]
    steps = [r for r in records if r["event"] == "step"]
    test = [e for e in evals if e["split"] == "test"]
    before = next((e for e in test if e["epoch"] == 0), None)
    after = final_test(records)
    cases = {}
    if before and after and before.get("predictions") and after.get("predictions"):
        cases = failure_cases(read_predictions(run_dir / before["predictions"]), read_predictions(run_dir / after["predictions"]))
    peak_gpu = max((s["gpu_mem_peak_gb"] for s in steps if s.get("gpu_mem_peak_gb") is not None), default=None)
    if end and end.get("gpu_mem_peak_gb") is not None:
        peak_gpu = max(peak_gpu or 0, end["gpu_mem_peak_gb"])
    cfg = start["config"]
    latest = next(r for r in reversed(records) if r["event"] in ("run_start", "resume"))  # the last process's start
    its_steps = [r for r in records[records.index(latest):] if r["event"] == "step"]
    return {
        "run_name": start["run_name"],
        "status": end["status"] if end else "running",
        "model": start["model"], "device": start["device"], "versions": start.get("versions"),
        "data": start["data"],
        "params": start["params"],
        "lora": {k: cfg[k] for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_bias", "target_modules")}
                | {"task_type": "CAUSAL_LM", "matched": start["lora_targets"]["matched"],
                   "unmatched": start["lora_targets"]["unmatched"]},
        "hyperparameters": {k: cfg[k] for k in ("epochs", "batch_size", "learning_rate", "lr_schedule", "loss",
                                                "optimizer", "gradient_checkpointing", "bucketing", "seed")},
        "before": _eval_summary(before), "after": _eval_summary(after),
        "validation": [_eval_summary(e) for e in evals if e["split"] == "validation"],
        "time": {"wall_s": round(end["time"] - start["time"], 3) if end else None,
                 # from this process's start (imports and model load included); a resumed run's is the last process's
                 "process_wall_s": end.get("process_wall_s") if end else None,
                 # the last process's: seconds from its start to run_start (or resume), by setup piece
                 "startup_s": round(latest["time"] - latest["process_start"], 3) if "process_start" in latest else None,
                 "startup": latest.get("startup"),
                 # compilation, warm-up and the CUDA-graph capture of the first shape included
                 "first_step_s": its_steps[0]["step_time_s"] if its_steps else None,
                 "train_steps_s": round(sum(s["step_time_s"] for s in steps), 3), "steps": len(steps),
                 "mean_samples_per_s": round(sum(s["samples"] for s in steps) / max(1e-9, sum(s["step_time_s"] for s in steps)), 2) if steps else None},
        "resources": {"device": start["device"]["name"], "processes": start.get("world_size", 1), "gpu_mem_peak_gb": peak_gpu,
                      "peak_rss_gb": end.get("peak_rss_gb") if end else None},
        "failure_cases": {k: {"count": len(v), "examples": v[:EXAMPLES_PER_CASE]} for k, v in cases.items()},
    }


def _eval_summary(e: dict | None) -> dict | None:
    if e is None:
        return None
    return {k: e.get(k) for k in ("split", "epoch", "step", "rows", "loss", "accuracy", "balanced_accuracy",
                                  "per_class_recall", "confusion", "labels")}


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _figures(names: list[str] | None) -> list[str]:
    if names is None:
        return ["", MISSING]
    titles = {"learning_curve.png": "Learning curve", "confusion_matrix.png": "Confusion matrix, final test evaluation"}
    return [line for name in names for line in ("", f"![{titles.get(name, name)}]({name})")]


def _adapters(model: dict) -> str:
    dtype = model.get("lora_compute_dtype", "float32")  # absent before 2026-12-01: float32
    text = "" if dtype == "float32" else f", adapters computing in {dtype} from float32 masters"
    text += ", shared-input linears fused" if model.get("fused_projections") else ""
    text += f", {model['fused_norms']} RMSNorms fused" if model.get("fused_norms") else ""
    text += f", rotary embedding fused in {model['fused_ropes']} attention layers" if model.get("fused_ropes") else ""
    text += f", SiLU(gate)*up fused in {model['fused_swiglus']} MLPs" if model.get("fused_swiglus") else ""
    return text + (", decoder layers compiled for training" if model.get("compiled") else "")


def _startup(t: dict) -> list[str]:
    """Where the time before the first step went (absent from runs written before 2026-12-01's seventh round)."""
    lines = []
    if t.get("startup_s") is not None:
        pieces = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in (t.get("startup") or {}).items())
        lines.append(f"- Start-up, process start to the run's start: {t['startup_s']:.1f} s" + (f" ({pieces})" if pieces else ""))
    if t.get("first_step_s") is not None:
        lines.append(f"- First training step (compilation, warm-up and graph capture included): {t['first_step_s']:.1f} s")
    return lines


def render_markdown(s: dict) -> str:
    p, lora, t, res = s["params"], s["lora"], s["time"], s["resources"]
    lines = [f"# Fine-tuning report: {s['run_name']}", "",
             f"Status: **{s['status']}**. Model `{s['model']['name']}` ({s['model']['architecture']}, "
             f"{s['model']['quantization']} base{', kept dequantized' if s['model'].get('dequantized') else ''}, "
             f"{s['model']['dtype']} compute{_adapters(s['model'])}) on {res['device']}.", "",
             "## Accuracy before and after fine-tuning", "",
             "| | rows | balanced accuracy | accuracy | loss |", "| --- | --- | --- | --- | --- |"]
    for name in ("before", "after"):
        e = s[name]
        if e:
            lines.append(f"| {name} (test, epoch {e['epoch']}) | {e['rows']} | {_pct(e['balanced_accuracy'])} | "
                         f"{_pct(e['accuracy'])} | {e['loss']:.4f} |")
    if s["validation"]:
        lines += ["", "Validation by epoch: " + ", ".join(
            f"epoch {e['epoch']} {_pct(e['balanced_accuracy'])}" for e in s["validation"]) + "."]
    lines += _figures(s.get("figures"))
    lines += ["", "## Time taken", "",
              f"- Wall time of the run: {hms(t['wall_s'])} ({t['wall_s']} s)",
              f"- Whole command, from process start: {hms(t['process_wall_s'])} ({t['process_wall_s']} s)",
              *_startup(t),
              f"- Training steps: {t['steps']} in {hms(t['train_steps_s'])} ({t['train_steps_s']} s), "
              f"{t['mean_samples_per_s']} samples/s", "",
              "## Parameters", "",
              f"- Trainable: {p['trainable']:,} of {p['total']:,} ({p['trainable_percent']:.2f}%)",
              f"- As bitsandbytes' packed storage counts them (the figure the published report quoted): "
              f"{p['trainable']:,} of {p['total_packed']:,} ({p['trainable_percent_packed']:.2f}%)", "",
              "## LoRA configuration", "", "| setting | value |", "| --- | --- |",
              f"| r | {lora['lora_r']} |", f"| alpha | {lora['lora_alpha']} |", f"| dropout | {lora['lora_dropout']} |",
              f"| bias | {lora['lora_bias']} |", f"| task type | {lora['task_type']} |",
              f"| target modules (asked) | {', '.join(lora['target_modules'])} |",
              f"| target modules (matched) | {', '.join(lora['matched'])} |",
              f"| matched nothing | {', '.join(lora['unmatched']) or '-'} |", "",
              "## Hyperparameters", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in s["hyperparameters"].items()]
    procs = res.get("processes", 1)
    lines += ["", "## Resources", "", f"- Device: {res['device']}" + (
                  f", {procs} data-parallel processes (one device each; memory figures are rank 0's)" if procs > 1 else ""),
              "- Peak GPU memory (allocated): " + (f"{res['gpu_mem_peak_gb']} GB" if res["gpu_mem_peak_gb"] is not None
                                                 else "n/a (CPU run)"),
              f"- Peak system memory (process RSS): {res['peak_rss_gb']} GB", "",
              "## Data", "", "| split | source | read | unlabelled dropped | bad skipped | used |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {k} | {d['file']} | {d['rows_read']} | {d['unlabeled_dropped']} | {d['bad_skipped']} | {d['selected']} |"
              for k, d in s["data"].items()]
    titles = {"corrected": "Failure cases corrected by fine-tuning",
              "not_corrected": "Failure cases not corrected by fine-tuning",
              "regressed": "Cases fine-tuning broke"}
    for key, title in titles.items():
        case = s["failure_cases"].get(key)
        if case is None:
            continue
        lines += ["", f"## {title} ({case['count']} rows)", ""]
        if case["examples"]:
            lines += ["| line | premise | hypothesis | gold | before | after |", "| --- | --- | --- | --- | --- | --- |"]
            lines += [f"| {r['line']} | {r['premise']} | {r['hypothesis']} | {r['gold']} | {r['before']} | {r['after']} |"
                      for r in case["examples"]]
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path, worker: FigureWorker | None = None) -> dict:
    """`worker`: the train command's figure worker (run.figure_worker), which draws the pictures; without
    one, or where it gives no answer, they are drawn here."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    summary = summarize_run(run_dir, records)
    # the PNG files beside report.md (None: matplotlib is not installed, and the report says so)
    answered, figures = worker.finish() if worker is not None else (False, None)
    summary["figures"] = figures if answered else write_figures(run_dir, records, summary["after"])
    write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text(run_dir / "report.md", render_markdown(summary))
    return summary
