"""Where a whole train command's time went, one JSON line per run directory, from its metrics file (and
summary.json): the start-up by piece, the first step, the captures, the steady steps, the evaluations, the
end. The bench call scripts of docs/bench/ print their tables with it.

    python scripts/run_timeline.py RUN_DIR...

Times named *_at_s are seconds from the process's start (metrics.md: process_start); the rest are
durations. `final_test_s` runs from the record before the final test evaluation to its record: the
evaluation, and whatever shared the process with it."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from nli_qlora.run.metrics import read_metrics


def timeline(run_dir: Path) -> dict:
    records = read_metrics(run_dir / "metrics.jsonl")
    start, end = records[0], records[-1]
    t0 = start["process_start"]
    steps = [r for r in records if r["event"] == "step"]
    evals = [r for r in records if r["event"] == "eval"]
    test = [e for e in evals if e["split"] == "test"]
    zero = [e for e in evals if e["epoch"] == 0]
    final = test[-1] if test and test[-1]["epoch"] > 0 else None
    before_final = records[records.index(final) - 1] if final else None
    captured = [s for s in steps if s.get("captured")]
    summary = run_dir / "summary.json"
    return {
        "run": run_dir.name,
        "startup": start.get("startup"),
        "run_start_at_s": round(start["time"] - t0, 3),
        "first_step_at_s": round(steps[0]["time"] - t0, 3) if steps else None,
        "zero_shot_evals_s": round(zero[-1]["time"] - start["time"], 3) if zero else None,
        "captures": len(captured), "captures_s": round(sum(s["step_time_s"] for s in captured), 3),
        "median_step_ms": round(1e3 * statistics.median(s["step_time_s"] for s in steps if not s.get("captured")), 3)
        if len(steps) > len(captured) else None,
        # the loop's own work between two steps that the steps' times leave out (none where a step was queued)
        "loop_gap_ms": round(1e3 * statistics.median(b["time"] - a["time"] - b["step_time_s"]
                                                     for a, b in zip(steps, steps[1:])
                                                     if b["epoch"] == a["epoch"] and not b.get("captured")), 3)
        if len(steps) > 2 else None,
        "steps_s": round(sum(s["step_time_s"] for s in steps), 3),
        "queued": sum(1 for s in steps if s.get("queued")),
        "final_test_s": round(final["time"] - before_final["time"], 3) if final else None,
        "run_s": round(end["time"] - start["time"], 3),
        "run_end_at_s": end.get("process_wall_s"),
        "peak_gb": end.get("gpu_mem_peak_gb"),
        "final_loss": steps[-1]["loss"] if steps else None,
        "test_balanced_accuracy": final["balanced_accuracy"] if final else None,
        "figures": json.loads(summary.read_text()).get("figures") if summary.is_file() else None,
    }


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(json.dumps(timeline(Path(d))))
