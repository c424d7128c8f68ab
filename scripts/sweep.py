"""Run the training CLI once per setting and tabulate what each run's summary.json says.

    python scripts/sweep.py --out runs/sweep --base "--model X.gguf --train-file ..." \
        --variant lr2e-4="--learning-rate 2e-4" --variant lr1e-3="--learning-rate 1e-3"

Choose settings on validation: pass --no-test-eval in --base so no test number is seen while choosing."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the run directories and sweep.json")
    parser.add_argument("--base", default="", help="flags every run gets")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in args.variant:
        name, _, flags = item.partition("=")
        cmd = [sys.executable, "-m", "nli_qlora.train", *shlex.split(args.base), *shlex.split(flags),
               "--output-dir", str(out / name), "--quiet"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        row = {"name": name, "flags": flags, "exit": proc.returncode, "wall_s": round(wall, 1)}
        summary = out / name / "summary.json"
        if summary.is_file():
            s = json.loads(summary.read_text())
            val = s["validation"]
            row.update(val_best=max(v["balanced_accuracy"] for v in val[1:]) if len(val) > 1 else None,
                       val_last=val[-1]["balanced_accuracy"] if val else None,
                       val_zero_shot=val[0]["balanced_accuracy"] if val else None,
                       test_before=(s["before"] or {}).get("balanced_accuracy"),
                       test_after=(s["after"] or {}).get("balanced_accuracy"),
                       train_s=s["time"]["train_steps_s"], samples_per_s=s["time"]["mean_samples_per_s"],
                       peak_gb=s["resources"]["gpu_mem_peak_gb"])
        else:
            row["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1]
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
