"""The benchmark suites stay alive: their smoke sizes run on a CPU; the report turns results into tables."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_benchmark_suites_run_at_smoke_size():
    env = {**os.environ, "NLI_BENCH_SIZE": "smoke"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-c", "kernels_bench/pytest.ini", "kernels_bench",
                           "--benchmark-disable", "-q"], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _case(name, **info):
    return {"name": name, "extra_info": info, "stats": {"median": 0.1, "rounds": 3}}


def _results(tmp_path: Path) -> Path:
    step = dict(kind="step", model="random:phi-2", seq="snli", checkpointing=False, bucketing=True, step_mode="fast",
                padding_fraction=0.05, peak_gpu_gb=4.2, flops_utilization=0.21, a40_estimate_ms=35.0,
                a40_bound="compute")
    data = {
        "datetime": "2026-11-28T00:00:00", "machine_info": {"nli_qlora": {
            "device": "NVIDIA H100 80GB HBM3", "capability": "9.0", "total_memory_gb": 85.0, "bench_size": "full",
            "versions": {"torch": "2.11"}, "git_commit": "abc123"}},
        "benchmarks": [
            _case("bench_step[phi-2-b8-snli]", batch=8, median_step_ms=62.0, samples_per_s=129.0,
                  real_tokens_per_s=6700.0, **step),
            _case("bench_step[phi-2-b64-snli]", batch=64, median_step_ms=350.0, samples_per_s=183.0,
                  real_tokens_per_s=9500.0, **step),
            _case("bench_peer[phi-2]", kind="peer", model="random:phi-2", batch=8, seq="snli", checkpointing=True,
                  bucketing=False, median_step_ms=590.0, samples_per_s=13.6, real_tokens_per_s=700.0,
                  padding_fraction=0.3, peak_gpu_gb=3.1, flops_utilization=0.02, a40_estimate_ms=None),
            _case("bench_optimizer[paged_adamw_8bit]", kind="optimizer", optimizer="paged_adamw_8bit", fused=False,
                  params=17448960, tensors=196, op_ms=1.5, peak_gpu_gb=0.2),
            _case("bench_flat_update[kernel]", kind="optimizer", optimizer="paged_adamw_8bit", update="kernel",
                  params=17514496, tensors=1, op_ms=0.1, peak_gpu_gb=0.2),
        ],
        "nli_qlora_oom": [{"name": "bench_step[phi-2-b128-snli-eager]", "peak_gb": 79.0}],
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    return path


def test_report_tables_put_the_peer_beside_each_case_and_plot_per_setting(tmp_path):
    path = _results(tmp_path)
    doc = tmp_path / "doc.md"
    doc.write_text("# x\n<!-- begin gpu-results -->\nplaceholder\n<!-- end gpu-results -->\nafter\n")
    proc = subprocess.run([sys.executable, "scripts/bench_report.py", str(path), "--into", str(doc)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = path.with_suffix(".md").read_text()
    assert "NVIDIA H100 80GB HBM3" in table
    row = next(line for line in table.splitlines() if "| 64 |" in line)
    assert "13.46" in row  # 183 / 13.6: throughput against the peer's
    assert "35.0 (compute)" in table and "17,448,960 parameters" in table
    assert "paged_adamw_8bit by kernel, 17,514,496 parameters in 1 tensors" in table
    assert "bench_step[phi-2-b128-snli-eager]" in table  # the case that did not fit is listed
    for png in ("bench-step_time.png", "bench-peak_memory.png"):
        assert (tmp_path / png).stat().st_size > 1000
    text = doc.read_text()
    assert "placeholder" not in text and "| 64 |" in text and text.endswith("after\n")
