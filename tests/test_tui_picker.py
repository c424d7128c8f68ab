"""A folder of runs opens as a list (tui.run_index, tui.widgets.run_picker), driven with the Pilot
on real run folders in tmp_path: enter opens one, space and c compare, escape comes back."""

import json
import shutil
from pathlib import Path

from test_tui_app import DATA, records, run_async, sweep_variant, until
from tui.__main__ import parser
from tui.app import DashboardApp
from tui.run_index import scan
from tui.widgets.compare_view import CompareView
from tui.widgets.run_picker import RunPicker
from tui.widgets.run_view import RunView

RUNS = {"b8-l512": "tui_gpu_run_metrics.jsonl", "b32-l256": "tui_running_run_metrics.jsonl",
        "b64-l1024": "tui_failed_run_metrics.jsonl"}


def make_folder(root: Path, sweep: bool = False) -> Path:
    folder = root / "sweep"
    for name, data in RUNS.items():
        (folder / name).mkdir(parents=True)
        shutil.copy(DATA / data, folder / name / "metrics.jsonl")
    if sweep:
        variants = [sweep_variant(name, "completed", score)
                    for name, score in (("b8-l512", 0.7), ("b32-l256", 0.9), ("b64-l1024", None))]
        variants.append(sweep_variant("b128-l128", "pending", None))
        (folder / "sweep.json").write_text(json.dumps({"variants": variants, "chosen": "b32-l256"}), encoding="utf-8")
    return folder


def best_val(name: str) -> float:
    return max(r["balanced_accuracy"] for r in records(DATA / RUNS[name])
               if r["event"] == "eval" and r["split"] == "validation")


def test_a_folder_lists_its_runs_best_validation_first(tmp_path):
    rows = scan(make_folder(tmp_path))
    assert [r.name for r in rows] == sorted(RUNS, key=best_val, reverse=True)
    for row in rows:
        recs = records(DATA / RUNS[row.name])
        steps = [r["step"] for r in recs if r["event"] == "step"]
        end = [r for r in recs if r["event"] == "run_end"]
        assert row.score == best_val(row.name) and row.snap.step == steps[-1]
        assert row.snap.recorded_status == (end[-1]["status"] if end else "running")


def test_a_sweep_folder_sorts_by_its_scores_and_marks_the_chosen(tmp_path):
    rows = scan(make_folder(tmp_path, sweep=True))
    assert [r.name for r in rows] == ["b32-l256", "b8-l512", "b64-l1024", "b128-l128"]
    assert [r.chosen for r in rows] == [True, False, False, False]
    assert rows[2].score == best_val("b64-l1024")  # no score in sweep.json: the run's own
    assert rows[3].snap is None and rows[3].sweep_status == "pending"


def test_runs_two_levels_down_are_found(tmp_path):
    folder = make_folder(tmp_path)
    (folder.parent / "more" / "deeper").mkdir(parents=True)
    shutil.copy(DATA / "tiny_run_metrics.jsonl", folder.parent / "more" / "deeper" / "metrics.jsonl")
    names = [r.name for r in scan(folder.parent)]
    assert sorted(names) == sorted([f"sweep/{n}" for n in RUNS] + ["more/deeper"])


def test_a_folder_alone_opens_the_list_and_with_others_compares(tmp_path):
    folder = make_folder(tmp_path)
    alone = parser().parse_args([str(folder)])
    assert alone.folder == folder and len(alone.paths) == 3
    other = tmp_path / "other"
    assert parser().parse_args([str(folder), str(other)]).folder is None
    assert parser().parse_args([str(folder / "b8-l512")]).folder is None


def picker_app(folder: Path) -> DashboardApp:
    now = records(DATA / RUNS["b8-l512"])[-1]["time"] + 1.0
    return DashboardApp([], folder=folder, clock=lambda: now, poll_interval=0.02)


@run_async
async def test_enter_opens_a_run_and_escape_comes_back(tmp_path):
    app = picker_app(make_folder(tmp_path))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunPicker) and app.screen.rows)
        first = app.screen.rows[0]
        await pilot.press("enter")
        await until(pilot, lambda: app.shown and app.shown[0] is not None and app.shown[0].caught_up)
        assert app.paths == [first.path] and isinstance(app.query_one("#view"), RunView)
        assert app.shown[0].step == first.snap.step
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunPicker))
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.shown and app.shown[0] is not None and app.shown[0].caught_up)
        assert app.paths == [scan(app.folder)[1].path]  # the cursor came back on the run it opened


@run_async
async def test_space_marks_and_c_compares_the_marked_runs(tmp_path):
    app = picker_app(make_folder(tmp_path))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunPicker) and app.screen.rows)
        rows = app.screen.rows
        await pilot.press("c")  # nothing marked: stays on the list, says why
        assert isinstance(app.screen, RunPicker)
        await pilot.press("space", "down", "space")
        await pilot.press("c")
        await until(pilot, lambda: len(app.shown) == 2 and all(s is not None and s.caught_up for s in app.shown))
        assert app.paths == [rows[0].path, rows[2].path] and isinstance(app.query_one("#view"), CompareView)
        await pilot.press("backspace")
        await until(pilot, lambda: isinstance(app.screen, RunPicker))
        assert app.screen.marked == {0, 2}  # the marks are kept for the next comparison
