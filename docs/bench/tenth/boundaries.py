"""Per metrics file: whole process to run_end, the epoch boundaries (last step of an epoch to the first
step of the next: validation eval + checkpoint), the checkpoint records' delay after their eval, steps."""
import json, statistics, sys
for f in sys.argv[1:]:
    recs = [json.loads(l) for l in open(f)]
    start = next(r for r in recs if r["event"] == "run_start"); end = recs[-1]
    steps = [r for r in recs if r["event"] == "step"]
    bounds = []
    for a, b in zip(steps, steps[1:]):
        if b["epoch"] != a["epoch"]:
            bounds.append(b["time"] - b["step_time_s"] - a["time"])
    ck = [r for r in recs if r["event"] == "checkpoint"]
    med = statistics.median(r["step_time_s"] for r in steps if not r.get("captured"))
    first_to_last = steps[-1]["time"] - steps[0]["time"]
    print(f"{f}: process to run_end {end.get('process_wall_s')} s, startup {start['startup']}, "
          f"epoch boundaries {[round(x, 3) for x in bounds]} (sum {sum(bounds):.2f} s), median step {1000*med:.2f} ms, "
          f"first to last step {first_to_last:.2f} s, checkpoints {len(ck)}, losses[0,-1] {steps[0]['loss']:.6f} {steps[-1]['loss']:.6f}")
