"""The view controls with Textual's Pilot on the recorded runs in tests/data: which metrics are
plotted, smoothing, log scale, zoom, cursor readout, wall-clock axis, hiding runs, export, and
the layout at small sizes. Expected values come from the files themselves."""

import json
from pathlib import Path

import pytest
from textual.widgets import Static

from test_tui_app import DATA, after_end, loaded, records, run_async, text_of, until
from tui.app import DashboardApp
from tui.layout import PLOT_MIN_ROWS
from tui.widgets.compare_view import CompareView
from tui.widgets.evals import EvalTable
from tui.widgets.events import EventLog
from tui.widgets.plot import MetricPlot
from tui.widgets.readout import Readout

GPU = DATA / "tui_gpu_run_metrics.jsonl"
RUNNING = DATA / "tui_running_run_metrics.jsonl"
SIZE = (140, 45)


def app_for(*paths: Path, **kw) -> DashboardApp:
    return DashboardApp(list(paths), poll_interval=0.02, clock=lambda: after_end(paths[0]), **kw)


def plot(app, name: str) -> MetricPlot:
    return app.query_one(f"#plot-{name}", MetricPlot)


def steps(path: Path) -> list[dict]:
    return [r for r in records(path) if r["event"] == "step"]


@run_async
async def test_the_metric_chooser_adds_and_removes_plots():
    app = app_for(GPU)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        assert not plot(app, "grad-norm").display
        await pilot.press("m")
        await pilot.press("down", "down", "down", "space", "up", "space", "enter")  # grad norm on, lr off
        await pilot.pause()
        assert "grad_norm" in app.options.panels and "lr" not in app.options.panels
        assert plot(app, "grad-norm").display and not plot(app, "lr").display
        grad = [r["grad_norm"] for r in steps(GPU)]
        assert plot(app, "grad-norm").lines[0].ys[-1] == grad[-1]


@run_async
async def test_the_validation_curve_is_drawn_over_steps():
    val = [r for r in records(GPU) if r["event"] == "eval" and r["split"] == "validation"]
    app = app_for(GPU)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        line = plot(app, "val").lines[0]
        assert line.xs == [float(r["step"]) for r in val]
        assert line.ys == [r["balanced_accuracy"] for r in val]


@run_async
async def test_smoothing_and_log_scale():
    app = app_for(GPU)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        loss = plot(app, "loss")
        auto = loss.lines[1].ys
        await pilot.press("s")  # off: the raw loss alone
        assert [line.label for line in loss.lines] == ["raw"]
        await pilot.press("s")  # an EMA of 10 steps: closer to the raw loss than the run's own
        raw = loss.lines[0].ys
        ten = loss.lines[1].ys
        assert "10 steps" in loss.border_title
        assert sum(abs(a - b) for a, b in zip(ten, raw)) < sum(abs(a - b) for a, b in zip(auto, raw))
        await pilot.press("l")
        assert loss.view.log_y and "log y" in text_of(app.query_one(Readout))


@run_async
async def test_zoom_pan_and_reset():
    last = steps(GPU)[-1]["step"]
    app = app_for(GPU)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("plus")
        lo, hi = plot(app, "loss").view.x_range
        assert hi == pytest.approx(last) and hi - lo < last * 0.6
        await pilot.press("left_square_bracket")
        lo2, hi2 = plot(app, "lr").view.x_range
        assert lo2 < lo and hi2 - lo2 == pytest.approx(hi - lo)
        await pilot.press("0")
        assert app.options.x_range is None
        assert plot(app, "loss").view.x_range[1] == pytest.approx(last)


@run_async
async def test_the_cursor_reads_out_the_values_at_its_step():
    app = app_for(GPU)
    recs = {r["step"]: r for r in steps(GPU)}
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("c", "full_stop", "full_stop")
        cursor = app.options.cursor
        assert cursor is not None and plot(app, "loss").view.cursor == cursor
        readout = text_of(app.query_one(Readout))
        step = round(cursor)
        assert f"step {step:,}" in readout
        lr = recs[min(recs, key=lambda s: abs(s - cursor))]["lr"]
        from tui import fmt
        assert f"lr {fmt.number(lr)}" in readout
        await pilot.press("c")
        assert app.options.cursor is None


@run_async
async def test_the_wall_clock_axis():
    recs = records(GPU)
    start = recs[0]["time"]
    app = app_for(GPU)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("w")
        xs = plot(app, "loss").lines[0].xs
        assert xs[-1] == pytest.approx(steps(GPU)[-1]["time"] - start)
        assert plot(app, "loss").view.x_is_time


@run_async
async def test_a_run_can_be_hidden_and_shown_in_compare_mode():
    app = app_for(GPU, RUNNING)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: all(loaded(app, index=i)() for i in range(2)))
        view = app.query_one(CompareView)
        loss = app.query_one("#compare-loss", MetricPlot)
        assert len(loss.lines) == 2
        app.query_one("#runs").focus()
        await pilot.press("space")
        assert [line.label for line in loss.lines] == [records(RUNNING)[0]["run_name"]]
        await pilot.press("space")
        assert len(loss.lines) == 2 and view is not None


@run_async
async def test_the_compare_plots_have_distinct_tick_labels():
    app = app_for(GPU, RUNNING)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: all(loaded(app, index=i)() for i in range(2)))
        await pilot.pause()
        for name in ("#compare-bal", "#compare-loss"):
            labels = app.query_one(name, MetricPlot).tick_labels
            for axis in ("x", "left"):
                assert len(labels[axis]) >= 2 and len(set(labels[axis])) == len(labels[axis]), labels


@run_async
async def test_export_writes_a_png_and_the_full_series_as_csv(tmp_path):
    import csv
    app = app_for(GPU)
    app.export_dir = tmp_path
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press("e")
        await until(pilot, lambda: app.exported is not None)
    png, table = app.exported
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    want = steps(GPU)
    assert len(rows) == len(want)
    assert [float(r["loss"]) for r in rows] == [r["loss"] for r in want]
    assert {r["run"] for r in rows} == {records(GPU)[0]["run_name"]}


@run_async
async def test_80x24_is_a_layout_with_pages():
    app = app_for(GPU)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, loaded(app))
        await pilot.pause()
        loss = plot(app, "loss")
        assert loss.display and loss.outer_size.height >= PLOT_MIN_ROWS and loss.outer_size.width >= 70
        assert not app.query_one(EvalTable).display or app.query_one(EvalTable).region.height == 0
        await pilot.press("2")
        await pilot.pause()
        assert app.query_one(EvalTable).region.height > 0 and loss.region.height == 0
        await pilot.press("3")
        await pilot.pause()
        assert app.query_one(EventLog).region.height > 5
        await pilot.press("1", "p")
        await pilot.pause()
        assert app.options.first_panel == 1 and plot(app, "val").outer_size.height >= PLOT_MIN_ROWS


@run_async
async def test_a_tiny_terminal_says_it_is_too_small():
    app = app_for(GPU)
    async with app.run_test(size=(50, 12)) as pilot:
        await until(pilot, loaded(app))
        await pilot.pause()
        note = app.query_one("#too-small", Static)
        assert note.display and "terminal too small" in text_of(note)


@pytest.mark.parametrize("size", [(80, 24), (60, 15), (140, 45)])
@run_async
async def test_y_labels_run_from_low_to_high(size):
    """Each plot's y labels are ascending (Plotext reverses labels that share a row)."""
    app = app_for(GPU)
    async with app.run_test(size=size) as pilot:
        await until(pilot, loaded(app))
        await pilot.pause()
        for name in app.query_one("#view").shown_panels:
            labels = plot(app, name.replace("_", "-")).tick_labels.get("left", [])
            values = [float(label.replace(",", "").rstrip("kMB")) for label in labels]
            assert values == sorted(values) and len(values) <= max(2, (plot(app, name.replace("_", "-")).size.height - 2) // 2)


@run_async
async def test_a_long_run_redraws_when_a_cell_moves_and_a_key_at_once(tmp_path):
    """Ten new steps of a 625-step run on a ~80-cell plot move it by more than a cell: redrawn.
    A key (smoothing) always redraws, even with no new points."""
    path = tmp_path / "metrics.jsonl"
    recs = records(GPU)
    cut = len(recs) - 40
    path.write_text("".join(json.dumps(r) + "\n" for r in recs[:cut]), encoding="utf-8")
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app, cut))
        await pilot.pause()
        loss = plot(app, "loss")
        version = loss._version
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in recs[cut:cut + 30]))
        await until(pilot, loaded(app, cut + 30))
        assert loss._version > version
        version = loss._version
        await pilot.press("s")
        assert loss._version > version
