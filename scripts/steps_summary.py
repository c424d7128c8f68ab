"""Summarize step records of one or more run directories: median step time (captured steps left
out), samples/s, padding, peak memory; and the largest loss difference between the first two runs."""

import json
import statistics
import sys
from pathlib import Path


def steps(run_dir: str) -> list[dict]:
    lines = Path(run_dir, "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "step"]


def main(dirs: list[str]) -> None:
    runs = {d: steps(d) for d in dirs}
    print(f"{'run':40s} {'steps':>5s} {'median ms':>10s} {'samples/s':>10s} {'pad %':>6s} {'peak GB':>8s} captured")
    for d, rs in runs.items():
        timed = [r for r in rs if not r.get("captured")]
        med = statistics.median(r["step_time_s"] for r in timed)
        sps = sum(r["samples"] for r in timed) / sum(r["step_time_s"] for r in timed)
        pad = sum(r["padded_tokens"] - r["tokens"] for r in rs) / sum(r["padded_tokens"] for r in rs)
        peak = max((r["gpu_mem_peak_gb"] or 0) for r in rs)
        cap = sum(r["step_time_s"] for r in rs if r.get("captured"))
        print(f"{Path(d).name:40s} {len(rs):5d} {1000 * med:10.1f} {sps:10.1f} {100 * pad:6.1f} {peak:8.2f} "
              f"{sum(1 for r in rs if r.get('captured'))} steps, {cap:.1f} s")
    if len(runs) >= 2:
        a, b = list(runs.values())[:2]
        diffs = [abs(x["loss"] - y["loss"]) for x, y in zip(a, b)]
        print(f"loss |diff| first two runs: max {max(diffs):.4g}, mean {statistics.mean(diffs):.4g} over {len(diffs)} steps;"
              f" first losses {[round(x['loss'], 4) for x in a[:5]]} vs {[round(y['loss'], 4) for y in b[:5]]}")


if __name__ == "__main__":
    main(sys.argv[1:])
