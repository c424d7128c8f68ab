"""Folding metrics records into the dashboard's state, and the reader loop, without Textual.

Expected values are read from the fixture file itself, so a re-recorded fixture still passes."""

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui.series import ENVELOPE, MEAN, Series, reduce_points
from tui.state import RunState
from tui.watch import RunWatcher

DATA = Path(__file__).parent / "data"
FIXTURES = sorted(DATA.glob("tiny_run_metrics.jsonl")) + sorted(DATA.glob("tui_*_metrics.jsonl"))
T0 = 1_764_300_000.0


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def folded(path: Path) -> RunState:
    state = RunState(source=str(path))
    state.feed(path.read_text(encoding="utf-8").splitlines())
    return state


def rec(event: str, t: float, **fields) -> str:
    return json.dumps({"event": event, "schema": 1, "time": T0 + t, "elapsed_s": t, **fields})


def start(total_steps=100, steps_per_epoch=50, epochs=2, t=0.0) -> str:
    return rec("run_start", t, run_name="r", run_dir="runs/r", config={"batch_size": 8}, model={"name": "m"},
               device={"type": "cpu"}, world_size=1, params={}, lora_targets={"matched": [], "unmatched": []},
               data={}, planned={"epochs": epochs, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps},
               versions={})


def step(n: int, t: float, loss=1.0, **extra) -> str:
    fields = dict(step=n, epoch=1 + (n - 1) // 50, epoch_step=1 + (n - 1) % 50, steps_per_epoch=50, loss=loss,
                  lr=1e-4, grad_norm=1.0, samples=8, tokens=400, padded_tokens=450, padding_fraction=0.1,
                  step_time_s=1.0, samples_per_s=8.0, tokens_per_s=400.0, gpu_mem_allocated_gb=None,
                  gpu_mem_reserved_gb=None, gpu_mem_peak_gb=None, rss_gb=1.5, skipped=False, captured=False)
    fields.update(extra)
    return rec("step", t, **fields)


# --- a recorded run, folded whole ------------------------------------------------------------------

@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_the_fixtures_follow_the_schema(path):
    from metrics_schema import problems  # tests/metrics_schema.py: docs/metrics.md as data
    assert [(i + 1, p) for i, r in enumerate(records(path)) for p in problems(r)] == []


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_a_recorded_run_folds_to_the_numbers_in_its_file(path):
    recs = records(path)
    snap = folded(path).snapshot()
    steps = [r for r in recs if r["event"] == "step"]
    evals = [r for r in recs if r["event"] == "eval"]
    ends = [r for r in recs if r["event"] == "run_end"]
    start_rec = recs[0]

    assert snap.malformed == 0
    assert snap.lines == len(recs)
    assert snap.info.run_name == start_rec["run_name"]
    assert snap.total_steps == start_rec["planned"]["total_steps"]
    assert snap.recorded_status == (ends[-1]["status"] if ends else "running")
    assert snap.step == steps[-1]["step"]
    assert snap.last["loss"] == [r["loss"] for r in steps if r["loss"] is not None][-1]
    assert len(snap.series["loss"][0]) == min(sum(r["loss"] is not None for r in steps), 2000)
    assert [(e.split, e.epoch, e.balanced_accuracy) for e in snap.evals] == [
        (r["split"], r["epoch"], r["balanced_accuracy"]) for r in evals]
    assert snap.evals[-1].confusion == tuple(tuple(row) for row in evals[-1]["confusion"])
    best = max((r for r in evals if r["split"] == "validation"), key=lambda r: r["balanced_accuracy"])
    assert snap.best_validation().balanced_accuracy == best["balanced_accuracy"]
    checkpoints = [r for r in recs if r["event"] == "checkpoint"]
    assert sum(e.text.startswith("saved ") for e in snap.events) == len(checkpoints)
    warnings = [r for r in recs if r["event"] == "warning"]
    assert sum(e.text.startswith("warning") for e in snap.events) == len(warnings)
    if ends:
        assert snap.elapsed(now=T0 + 10**6, stall_after=60) == pytest.approx(ends[-1]["elapsed_s"])
        assert snap.eta(now=T0 + 10**6, stall_after=60) is None


def test_a_cpu_run_has_no_gpu_points():
    snap = folded(DATA / "tiny_run_metrics.jsonl").snapshot()
    steps = [r for r in records(DATA / "tiny_run_metrics.jsonl") if r["event"] == "step"]
    if all(r["gpu_mem_allocated_gb"] is None for r in steps):
        assert snap.series["gpu_mem_allocated_gb"] == ([], [])
        assert snap.last["gpu_mem_allocated_gb"] is None


def test_the_error_of_a_failed_run_is_kept():
    path = DATA / "tui_failed_run_metrics.jsonl"
    end = records(path)[-1]
    snap = folded(path).snapshot()
    assert snap.recorded_status == "failed"
    assert snap.error == end["error"]
    assert any(end["error"] in e.text and e.level == "error" for e in snap.events)
    assert any(end["log"] in e.text for e in snap.events)


# --- bad input -------------------------------------------------------------------------------------

def test_garbage_lines_are_counted_and_the_rest_still_folds():
    state = RunState()
    state.feed([
        start(),
        "this is not json",
        "[1, 2, 3]",
        '{"no_event": true}',
        step(1, 1.0),
        '{"event": "step", "step": "one"}',  # wrong type
        json.dumps({"event": "step", "step": 2, "loss": "high"}),  # wrong type
        '{"event": "eval", "confusion": [[1, 2]]}',  # not 3x3
        '{"event": "some_future_event", "x": 1}',  # unknown events are fine, not malformed
        "",
        step(2, 2.0, loss=0.5),
    ])
    snap = state.snapshot()
    assert snap.malformed == 6
    assert snap.step == 2 and snap.series["loss"][1] == [1.0, 0.5]
    noted = [e for e in snap.events if "malformed" in e.text]
    assert noted and noted[0].text.startswith("line 2:")


def test_only_the_first_few_malformed_lines_are_quoted():
    state = RunState()
    state.feed(["garbage"] * 50)
    snap = state.snapshot()
    assert snap.malformed == 50
    assert len(snap.events) < 10


def test_null_and_non_finite_values_are_not_points():
    state = RunState()
    state.feed([start(), step(1, 1.0, loss=None, skipped=True), "{" + step(2, 2.0)[1:].replace('"loss": 1.0', '"loss": NaN'),
                step(3, 3.0, loss=0.7)])
    snap = state.snapshot()
    assert snap.series["loss"] == ([3.0], [0.7])
    assert snap.skipped_steps == 1
    assert any("update skipped" in e.text for e in snap.events)


def test_the_newest_loss_is_the_newest_steps_own_not_an_older_finite_one():
    """Step 3's update was skipped (null loss): the border beside "step 3" must not show step 2's."""
    for batched in (True, False):
        state = RunState()
        lines = [start(), step(1, 1.0, loss=0.9, grad_norm=2.0), step(2, 2.0, loss=0.8, grad_norm=3.0),
                 step(3, 3.0, loss=None, grad_norm=None, skipped=True)]
        if batched:
            state.feed(lines)
        else:
            for line in lines:
                state.feed([line])
        snap = state.snapshot()
        assert snap.step == 3 and snap.last["loss"] is None and snap.last["grad_norm"] is None
        assert snap.series["loss"] == ([1.0, 2.0], [0.9, 0.8])  # the curve keeps its finite points
        state.feed([step(4, 4.0, loss=0.7)])
        assert state.snapshot().last["loss"] == 0.7


def test_a_step_that_captured_a_cuda_graph_is_left_out_of_the_throughput_views():
    state = RunState()
    state.feed([start(), step(1, 1.0, captured=True, step_time_s=9.0, samples_per_s=0.9),
                step(2, 2.0, captured=False)])
    snap = state.snapshot()
    for name in ("step_time_s", "samples_per_s", "tokens_per_s"):
        assert snap.series[name][0] == [2.0]
    assert snap.series["loss"][0] == [1.0, 2.0]


MIXED = [start(), step(1, 1.0), step(2, 2.0, captured=True, step_time_s=9.0), "not json",
         step(3, 3.0, loss=None, skipped=True), step(4, 4.0, loss="high"), step(5, 5.0, time="soon"),
         rec("eval", 5.5, split="validation", step=5, epoch=1, balanced_accuracy=0.5, accuracy=0.5),
         step(6, 6.0, loss=0.5),
         json.dumps({"event": "step", "loss": 1.0}), step(8, 8.0, step_time_s=True), "", step(9, 9.0, loss=0.25),
         rec("checkpoint", 9.5, path="runs/r/c", step=9, kind="epoch"), step(10, 10.0, epoch=None)]


def _folded_in(batches: list[list[str]]):
    state = RunState()
    for batch in batches:
        state.feed(batch)
    return state.snapshot()


@given(st.lists(st.integers(0, len(MIXED)), max_size=6))
def test_steps_fold_the_same_in_batches_or_one_line_at_a_time(cuts):
    """Step records are folded a column at a time when their fields are plain, one record at a
    time otherwise: either way, and wherever the file's reads happen to split it, the same run."""
    cuts = sorted(set(cuts))
    batches = [MIXED[a:b] for a, b in zip([0, *cuts], [*cuts, len(MIXED)])]
    one_by_one = _folded_in([[line] for line in MIXED])
    assert _folded_in(batches) == one_by_one
    assert one_by_one.malformed == 5 and one_by_one.skipped_steps == 1 and one_by_one.step == 10
    assert [e.text.split(":")[0] for e in one_by_one.events if "malformed" in e.text] == [
        "line 4", "line 6", "line 7", "line 10", "line 11"]
    assert one_by_one.series["step_time_s"][0] == [1.0, 3.0, 6.0, 9.0, 10.0]  # captured and bad ones out


# --- time: status, elapsed, ETA ----------------------------------------------------------------------

def test_a_quiet_running_run_is_stalled_after_the_threshold():
    state = RunState()
    state.feed([start(), step(1, 1.0), step(2, 2.0)])
    snap = state.snapshot()
    assert snap.status(now=T0 + 2.0 + 59, stall_after=60) == "running"
    assert snap.status(now=T0 + 2.0 + 61, stall_after=60) == "stalled"
    assert snap.status(now=T0 + 2.0 + 61, stall_after=120) == "running"
    assert snap.elapsed(now=T0 + 500, stall_after=60) == pytest.approx(2.0)  # stalled: up to the last line


def test_a_line_that_arrives_while_watching_counts_as_activity():
    """The run's clock may be behind ours (another machine): arrival time keeps it running."""
    state = RunState()
    state.feed([start(), step(1, 1.0)], arrived=T0 + 1000.0)
    assert state.snapshot().status(now=T0 + 1030.0, stall_after=60) == "running"


def test_elapsed_and_eta_follow_the_recent_step_rate():
    state = RunState()
    state.feed([start(total_steps=100)] + [step(n, 2.0 * n) for n in range(1, 11)])  # 0.5 steps/s
    snap = state.snapshot()
    assert snap.steps_per_s == pytest.approx(0.5)
    now = T0 + 20.0
    assert snap.elapsed(now, stall_after=60) == pytest.approx(20.0)
    assert snap.eta(now, stall_after=60) == pytest.approx(90 / 0.5)
    assert snap.eta(now + 10, stall_after=60) == pytest.approx(90 / 0.5 - 10)
    assert snap.elapsed(now + 10, stall_after=60) == pytest.approx(30.0)


def test_a_resumed_run_drops_the_redone_steps_and_sums_its_time():
    state = RunState()
    lines = [start()] + [step(n, float(n)) for n in range(1, 31)]
    lines += [rec("eval", 30.5, split="validation", step=30, epoch=1, loss=0.5, accuracy=0.6, balanced_accuracy=0.6,
                  per_class_recall={}, confusion=None, labels=None, rows=10, eval_time_s=0.5)]
    # what the trainer writes on resume: the restored checkpoint (the new process's clock) before `resume`
    lines += [rec("checkpoint", 0.0, path="runs/r/checkpoints/step-20", step=20, epoch=1, kind="restored")]
    lines += [rec("resume", 0.0, checkpoint="runs/r/checkpoints/step-20", step=20, epoch=1)]
    lines += [step(n, float(n - 20)) for n in range(21, 26)]
    state.feed(lines)
    snap = state.snapshot()
    xs = snap.series["loss"][0]
    assert xs == [float(n) for n in range(1, 26)]
    assert snap.evals == ()  # its step (30) was after the checkpoint: it will be redone
    assert snap.resumes == 1 and snap.recorded_status == "running"
    assert snap.elapsed(now=T0 + 5.0, stall_after=60) == pytest.approx(30.5 + 5.0)  # the eval ended at 30.5
    assert any(e.text.startswith("resumed at step 20") for e in snap.events)


def test_a_second_run_start_shows_the_new_run_alone():
    state = RunState()
    state.feed([start(), step(1, 1.0), step(2, 2.0), start(total_steps=7), step(1, 1.0)])
    snap = state.snapshot()
    assert snap.total_steps == 7 and snap.series["loss"][0] == [1.0]


def test_reset_forgets_the_file_and_bumps_the_generation():
    state = RunState()
    state.feed([start(), step(1, 1.0), "garbage"])
    state.reset()
    snap = state.snapshot()
    assert snap.generation == 1 and snap.lines == 0 and snap.malformed == 0 and snap.info is None
    assert snap.recorded_status == "waiting"


def test_the_smoothed_loss_starts_at_the_first_loss_and_lags_the_raw_one():
    state = RunState()
    state.feed([start()] + [step(n, float(n), loss=2.0 if n < 20 else 1.0) for n in range(1, 40)])
    ema = state.snapshot().series["loss_ema"][1]
    assert ema[0] == pytest.approx(2.0)
    assert 1.0 < ema[19] < 2.0 and ema[-1] < ema[19]


# --- downsampling ------------------------------------------------------------------------------------

def test_the_envelope_keeps_spikes_and_stays_bounded():
    xs = list(range(100_000))
    ys = [math.sin(i / 500) for i in xs]
    ys[31_337] = 50.0
    out_x, out_y = reduce_points(xs, ys, 2000, ENVELOPE)
    assert len(out_x) <= 2000
    assert max(out_y) == 50.0 and out_x[out_y.index(50.0)] == 31_337
    assert out_x == sorted(out_x)


def test_an_incremental_series_view_matches_a_one_shot_reduction():
    for mode in (ENVELOPE, MEAN):
        series = Series(max_points=300, mode=mode)
        xs, ys = [], []
        for i in range(5000):
            series.append(float(i), float((i * 7919) % 101))
            xs.append(float(i))
            ys.append(float((i * 7919) % 101))
            if i % 997 == 0:
                assert series.view() == reduce_points(xs, ys, 300, mode)
        assert series.view() == reduce_points(xs, ys, 300, mode)
        assert len(series.view()[0]) <= 300


def test_truncating_a_series_rebuilds_its_view():
    series = Series(max_points=100)
    for i in range(1, 1001):
        series.append(float(i), float(i))
    series.view()
    series.truncate_after(500)
    assert len(series) == 500 and series.view() == reduce_points(list(map(float, range(1, 501))),
                                                                 list(map(float, range(1, 501))), 100)


# --- the reader loop ---------------------------------------------------------------------------------

def test_the_watcher_folds_new_lines_and_starts_over_on_truncation(tmp_path):
    path = tmp_path / "metrics.jsonl"
    watcher = RunWatcher([path], clock=lambda: T0, min_interval=0.0)
    (index, snap), = watcher.poll()
    assert index == 0 and not snap.exists
    assert watcher.poll() == []  # nothing changed
    path.write_text(start() + "\n" + step(1, 1.0) + "\n" + '{"event": "st')
    (_, snap), = watcher.poll()
    assert snap.exists and snap.step == 1 and snap.pending_bytes > 0 and snap.caught_up
    with open(path, "a") as f:
        f.write('ep", "step": 2, "loss": 0.25}\n')
    (_, snap), = watcher.poll()
    assert snap.step == 2 and snap.last["loss"] == 0.25 and snap.malformed == 0 and snap.pending_bytes == 0
    assert snap.last_arrival == T0  # arrived while watching
    path.write_text(start(total_steps=5) + "\n")
    (_, snap), = watcher.poll()
    assert snap.generation == 1 and snap.total_steps == 5 and snap.step == 0


def test_the_watcher_sends_a_big_file_in_throttled_batches(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join([start(total_steps=5000)] + [step(n, float(n)) for n in range(1, 5001)]) + "\n")
    watcher = RunWatcher([path], min_interval=3600.0)
    watcher.tails[0].max_bytes = 64 * 1024
    sent = []
    while True:
        sent += watcher.poll()
        if not watcher.busy:
            break
    assert len(sent) == 2  # the first batch at once, then nothing until caught up
    assert sent[-1][1].caught_up and sent[-1][1].step == 5000


def test_the_peak_and_recent_throughput_are_every_steps_not_the_thinned_views():
    """5,000 steps are thinned to bucket means for the plots; a peak of 40 GB in the last two steps
    is still the run's peak, and the recent throughput is the last 50 steps' own."""
    state = RunState(max_points=2000)
    state.feed([start(total_steps=5000)] + [step(n, float(n), gpu_mem_peak_gb=40.0 if n > 4998 else 10.0,
                                                  samples_per_s=1000.0 if n > 4950 else 8.0) for n in range(1, 5001)])
    snap = state.snapshot()
    assert max(snap.series["gpu_mem_peak_gb"][1]) < 40.0  # the view's buckets average it away
    assert snap.gpu_peak_gb == 40.0
    assert snap.recent_samples_per_s == (1000.0,) * 50


def test_the_header_says_when_the_4bit_base_was_kept_dequantized_and_what_else_changes_the_step():
    from tui.widgets.header import _model
    for model, label in (({"name": "m", "quantization": "nf4", "dtype": "bfloat16"}, "m · nf4 · bfloat16"),
                         ({"name": "m", "quantization": "nf4", "dequantized": True, "dtype": "bfloat16"},
                          "m · nf4, kept dequantized · bfloat16"),
                         ({"name": "m", "quantization": "nf4", "dtype": "bfloat16", "lora_compute_dtype": "bfloat16"},
                          "m · nf4 · bfloat16 · adapters bfloat16"),
                         ({"name": "m", "quantization": "nf4", "dtype": "bfloat16", "compiled": True},
                          "m · nf4 · bfloat16 · layers compiled")):
        state = RunState()
        state.feed([start().replace('"model": {"name": "m"}', '"model": ' + json.dumps(model))])
        assert _model(state.snapshot()) == label
