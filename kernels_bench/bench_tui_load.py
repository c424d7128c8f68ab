"""How long the dashboard takes to load a long run: the issue asks that a 100,000-line metrics
file opens and draws in about a second or two.

    NLI_BENCH_SIZE=smoke python -m pytest -c kernels_bench/pytest.ini kernels_bench/bench_tui_load.py  # 5,000 lines
    NLI_BENCH_SIZE=full  python -m pytest -c kernels_bench/pytest.ini kernels_bench/bench_tui_load.py  # 100,000
(the suite's switch, kernels_bench/sizes.py: without it, full where CUDA is available, else smoke).

Two cases on the same generated file (a run_start, zero-shot evals, then steps with an eval and a
checkpoint every 1,000 steps, and a run_end, shaped as docs/metrics.md says):
- read_and_fold: FileTail + RunState.snapshot() from byte 0, no Textual;
- open_and_draw: DashboardApp headless (run_test, 140x45) until the whole file is folded and the
  screen that shows it has been drawn;
- live_latency: the app following the file (default 0.25 s poll), one step line appended, the
  seconds until the screen shows it (lines appended 0.6 s apart, so the redraw throttle is idle);
- redraw_cpu: CPU seconds of one redraw after 10 step lines are appended to the file (its
  history is the file's length): what tailing a live run costs per redraw, at most two a second.
Each case records in extra_info the line count, the file size, the JSON parser (orjson when
installed, else the standard library's json), the median process CPU seconds, and the machine's
load average when it started (the wall time means little on a busy shared machine).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import time
from pathlib import Path

import pytest

from kernels_bench import sizes
from tui.app import DashboardApp
from tui.state import RunState
from tui.tail import FileTail

LINES = 100_000 if sizes.FULL else 5_000
ROUNDS = 3 if sizes.FULL else 5
STEPS_PER_EPOCH = 1000
LABELS = ["entailment", "neutral", "contradiction"]


def _record(event: str, t: float, **fields) -> str:
    return json.dumps({"event": event, "schema": 1, "time": 1_764_300_000.0 + t, "elapsed_s": t, **fields})


def _eval(t: float, step: int, epoch: int, split: str, rng: random.Random) -> str:
    confusion = [[rng.randint(20, 30) if i == j else rng.randint(0, 5) for j in range(3)] for i in range(3)]
    recall = {label: confusion[i][i] / sum(confusion[i]) for i, label in enumerate(LABELS)}
    return _record("eval", t, split=split, step=step, epoch=epoch, loss=rng.uniform(0.4, 1.1),
                   accuracy=sum(recall.values()) / 3, balanced_accuracy=sum(recall.values()) / 3,
                   per_class_recall=recall, confusion=confusion, labels=LABELS, rows=99, eval_time_s=2.0)


def write_run(path: Path, lines: int) -> None:
    """A completed GPU run of exactly ``lines`` lines."""
    rng = random.Random(0)
    steps = lines - 5 - 2 * ((lines - 5) // (STEPS_PER_EPOCH + 2))  # room for the eval+checkpoint pairs
    epochs = math.ceil(steps / STEPS_PER_EPOCH)
    out = [_record("run_start", 0.0, run_name="bench", run_dir="runs/bench", config={"batch_size": 8},
                   model={"name": "bench-model", "architecture": "LlamaForCausalLM", "dtype": "bfloat16",
                          "quantization": "nf4"},
                   device={"type": "cuda", "name": "GPU", "count": 1, "total_memory_gb": 80.0}, world_size=1,
                   params={"trainable": 1_622_016, "total": 136_138_560}, lora_targets={"matched": [], "unmatched": []},
                   data={}, planned={"epochs": epochs, "steps_per_epoch": STEPS_PER_EPOCH, "total_steps": steps},
                   versions={}),
           _eval(1.0, 0, 0, "validation", rng), _eval(2.0, 0, 0, "test", rng)]
    t = 2.0
    for step in range(1, steps + 1):
        t += 0.1
        tokens = rng.randint(3000, 4000)
        out.append(_record(
            "step", t, step=step, epoch=1 + (step - 1) // STEPS_PER_EPOCH, epoch_step=1 + (step - 1) % STEPS_PER_EPOCH,
            steps_per_epoch=STEPS_PER_EPOCH, loss=0.4 + 0.7 * math.exp(-step / 5000) + rng.gauss(0, 0.05),
            lr=5e-4 * 0.5 * (1 + math.cos(math.pi * step / steps)), grad_norm=abs(rng.gauss(1, 0.3)), samples=8,
            tokens=tokens, padded_tokens=tokens + 400, padding_fraction=400 / (tokens + 400), step_time_s=0.1,
            samples_per_s=80.0 + rng.uniform(-5, 5), tokens_per_s=tokens * 10.0, gpu_mem_allocated_gb=1.6,
            gpu_mem_reserved_gb=2.2, gpu_mem_peak_gb=2.5, rss_gb=3.1, skipped=False, captured=False))
        if step % STEPS_PER_EPOCH == 0 and len(out) + 4 <= lines:
            epoch = step // STEPS_PER_EPOCH
            out.append(_eval(t + 1.0, step, epoch, "validation", rng))
            out.append(_record("checkpoint", t + 1.5, path=f"runs/bench/checkpoints/epoch-{epoch}", step=step,
                               epoch=epoch, kind="epoch"))
    out.append(_eval(t + 2.0, steps, epochs, "test", rng))
    out.append(_record("run_end", t + 2.5, status="completed", elapsed_s=t + 2.5, error=None, log=None))
    out += [_record("warning", t + 2.5, kind="bench_padding", message="filler")] * (lines - len(out))
    path.write_text("\n".join(out[:lines]) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def metrics_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench_tui") / "metrics.jsonl"
    write_run(path, LINES)
    return path


def _read_and_fold(path: Path):
    tail, state = FileTail(path), RunState(source=str(path))
    while True:
        got = tail.poll()
        state.feed(got.lines)
        if not got.more:
            return state.snapshot()


async def _open_and_draw(path: Path):
    app = DashboardApp([path], clock=lambda: 1_764_300_000.0, poll_interval=0.01)
    async with app.run_test(size=(140, 45)) as pilot:
        while app.shown[0] is None or not app.shown[0].caught_up:
            await asyncio.sleep(0.01)  # not pilot.pause(): it visits every widget, and would steal the GIL
        await pilot.pause()  # the refresh that draws the plots and tables
        return app.shown[0]


def _with_cpu_time(fn, benchmark):
    """fn, also recording the process CPU seconds of each call (both threads): on a shared machine
    the wall time depends on the neighbours' load, the CPU time much less."""
    cpu: list[float] = []

    def timed():
        start = time.process_time()
        result = fn()
        cpu.append(time.process_time() - start)
        benchmark.extra_info["cpu_s_median"] = round(statistics.median(cpu), 3)
        return result
    return timed


def _describe(benchmark, path: Path) -> None:
    from tui.state import parse_json
    benchmark.extra_info.update(lines=LINES, bytes=path.stat().st_size, json=parse_json.__module__,
                                load_average_1m=round(os.getloadavg()[0], 2), cpus=os.cpu_count())


def bench_read_and_fold(benchmark, metrics_file):
    _describe(benchmark, metrics_file)
    load = _with_cpu_time(lambda: _read_and_fold(metrics_file), benchmark)
    snap = benchmark.pedantic(load, rounds=ROUNDS, iterations=1)
    assert snap.lines == LINES and snap.malformed == 0 and snap.recorded_status == "completed"


def bench_open_and_draw(benchmark, metrics_file):
    _describe(benchmark, metrics_file)
    open_app = _with_cpu_time(lambda: asyncio.run(_open_and_draw(metrics_file)), benchmark)
    snap = benchmark.pedantic(open_app, rounds=ROUNDS, iterations=1)
    assert snap.lines == LINES and snap.recorded_status == "completed"


def _step_line(step: int) -> str:
    return _record("step", 1e5 + step, step=step, epoch=1, epoch_step=step, steps_per_epoch=10 ** 6, loss=0.5,
                   lr=1e-4, grad_norm=1.0, samples=8, tokens=3000, padded_tokens=3400, padding_fraction=0.1,
                   step_time_s=0.05, samples_per_s=80.0, tokens_per_s=30000.0, gpu_mem_allocated_gb=1.6,
                   gpu_mem_reserved_gb=2.2, gpu_mem_peak_gb=2.5, rss_gb=3.1, skipped=False, captured=False)


@pytest.fixture(scope="module")
def live_file(metrics_file, tmp_path_factory) -> Path:
    """The same run, still going: no run_end (nor the padding after it)."""
    path = tmp_path_factory.mktemp("bench_tui_live") / "metrics.jsonl"
    lines = [line for line in metrics_file.read_text(encoding="utf-8").splitlines()
             if '"run_end"' not in line and '"bench_padding"' not in line]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def _follow(path: Path, rounds: int, lines_per_round: int, pause: float) -> list[tuple[float, float]]:
    """(wall seconds, CPU seconds) from appending lines until the screen shows them, per round."""
    step = max(json.loads(line).get("step") or 0 for line in path.read_text(encoding="utf-8").splitlines()[-20:])
    app = DashboardApp([path], clock=lambda: 1_764_300_000.0)  # the default poll interval
    out = []
    async with app.run_test(size=(140, 45)) as pilot:
        while app.shown[0] is None or not app.shown[0].caught_up:
            await asyncio.sleep(0.01)
        await pilot.pause()
        for _ in range(rounds):
            await asyncio.sleep(pause)
            wall, cpu = time.perf_counter(), time.process_time()
            with open(path, "a", encoding="utf-8") as f:
                for _ in range(lines_per_round):
                    step += 1
                    f.write(_step_line(step) + "\n")
            while app.shown[0].step != step:
                await asyncio.sleep(0.005)
            await pilot.pause()  # drawn
            out.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def bench_live_latency(benchmark, live_file):
    _describe(benchmark, live_file)
    rounds = asyncio.run(_follow(live_file, 10, 1, 0.6))
    benchmark.extra_info["latency_s_median"] = round(statistics.median(w for w, _ in rounds), 3)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def bench_redraw_cpu(benchmark, live_file):
    _describe(benchmark, live_file)
    rounds = asyncio.run(_follow(live_file, 20, 10, 0.6))
    benchmark.extra_info["redraw_cpu_s_median"] = round(statistics.median(c for _, c in rounds), 4)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
