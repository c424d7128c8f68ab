"""The dashboard app driven by Textual's Pilot, on real files in tmp_path.

Expected values come from the fixture file itself, so a re-recorded fixture still passes."""

import asyncio
import functools
import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from tui.app import DashboardApp
from tui.widgets.compare_view import RunsTable
from tui.widgets.evals import ConfusionView, EvalTable
from tui.widgets.events import EventLog
from tui.widgets.header import RunHeader
from tui.widgets.help import HelpScreen
from tui.widgets.plot import MetricPlot
from tui.widgets.titlebar import TitleBar

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_run_metrics.jsonl"
SIZE = (140, 45)


def run_async(test):
    """Each test body is a coroutine run in its own event loop (no pytest async plugin needed)."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))
    return wrapper


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def after_end(path: Path) -> float:
    """A fixed "now" just after the file's last line, so status and times do not depend on the clock."""
    return records(path)[-1]["time"] + 1.0


def text_of(widget) -> str:
    """What a Static-based widget shows, as plain text."""
    console = Console(width=SIZE[0], file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


def log_text(app) -> str:
    return "\n".join(strip.text for strip in app.query_one(EventLog).lines)


def sweep_variant(name: str, status: str, score: float | None) -> dict:
    """One variant of sweep.json as `python -m nli_qlora.sweep` writes it (one run, the config's seed)."""
    outcome = {"status": status, "score": score}
    return {"name": name, "same_as": None, "outcome": outcome, "runs": [{"seed": None, "run_dir": name, "outcome": outcome}]}


async def until(pilot, condition) -> None:
    """Let the app run until condition() holds (the reader thread and redraws are asynchronous)."""
    while not condition():
        await pilot.pause(0.02)


def loaded(app, lines: int | None = None, index: int = 0):
    """A condition: the plots and tables show the file read to its end (and at least ``lines`` lines)."""
    def check() -> bool:
        shown = app.shown[index]
        return shown is not None and shown.caught_up and (lines is None or shown.lines >= lines)
    return check


def app_for(*paths, **kw) -> DashboardApp:
    kw.setdefault("clock", lambda: after_end(TINY))
    return DashboardApp(list(paths), poll_interval=0.02, **kw)


def append(path: Path, *lines: str, newline: bool = True) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + ("\n" if newline else ""))


@run_async
async def test_a_finished_run_shows_its_numbers():
    recs = records(TINY)
    evals = [r for r in recs if r["event"] == "eval"]
    end = recs[-1]
    steps = [r for r in recs if r["event"] == "step"]
    app = app_for(TINY)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        header = text_of(app.query_one(RunHeader))
        assert end["status"] in header and recs[0]["run_name"] in header
        table = app.query_one(EvalTable)
        assert table.row_count == len(evals)
        best = max((r for r in evals if r["split"] == "validation"), key=lambda r: r["balanced_accuracy"])
        cells = [str(c) for row in range(table.row_count) for c in table.get_row_at(row)]
        assert any(c.strip().startswith(f"{best['balanced_accuracy']:.3f}") and "★" in c for c in cells)
        assert f"best validation {best['balanced_accuracy']:.3f}" in table.border_subtitle
        confusion = text_of(app.query_one(ConfusionView))
        assert all(f"{n:,}" in confusion for n in evals[-1]["confusion"][0])
        assert f"epoch {evals[-1]['epoch']}" in app.query_one(ConfusionView).border_title
        assert f"step {steps[-1]['step']:,} / " in text_of(app.query_one("#step-label"))
        loss = app.query_one("#plot-loss", MetricPlot)
        assert [line.label for line in loss.lines] == ["raw", "smoothed"]
        assert loss.lines[0].ys[-1] == steps[-1]["loss"]
        log = log_text(app)
        assert "run completed" in log
        for warning in (r for r in recs if r["event"] == "warning"):
            assert warning["kind"] in log


@run_async
async def test_the_confusion_matrix_follows_the_table_cursor():
    evals = [r for r in records(TINY) if r["event"] == "eval"]
    app = app_for(TINY)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        app.query_one(EvalTable).focus()
        await pilot.press(*["up"] * len(evals))
        await pilot.pause()
        title = app.query_one(ConfusionView).border_title
        assert f"{evals[0]['split']} · epoch {evals[0]['epoch']}" in title


@run_async
async def test_a_failed_run_shows_its_error():
    path = DATA / "tui_failed_run_metrics.jsonl"
    end = records(path)[-1]
    app = app_for(path, clock=lambda: after_end(path))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        header = text_of(app.query_one(RunHeader))
        assert "failed" in header and end["error"][:40] in header
        log = " ".join(log_text(app).split())
        assert end["error"][:40] in log and end["log"] in log


@run_async
async def test_a_cpu_run_says_gpu_memory_is_not_available():
    steps = [r for r in records(TINY) if r["event"] == "step"]
    app = app_for(TINY)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        memory = app.query_one("#plot-memory", MetricPlot)
        if steps[-1]["gpu_mem_allocated_gb"] is None:
            assert "GPU n/a" in memory.border_subtitle
        else:
            assert "GPU n/a" not in memory.border_subtitle


@run_async
async def test_lines_appended_while_running_update_the_widgets(tmp_path):
    """Started before the run: waits for the file, then follows it line by line."""
    path = tmp_path / "run" / "metrics.jsonl"
    recs = records(TINY)
    first_eval = next(i for i, r in enumerate(recs) if r["event"] == "eval")
    first_step = next(i for i, r in enumerate(recs) if r["event"] == "step")
    app = app_for(path, clock=lambda: recs[-1]["time"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.latest[0] is not None)
        assert "waiting" in text_of(app.query_one(RunHeader))

        path.parent.mkdir()
        append(path, *map(json.dumps, recs[:first_step + 3]))
        await until(pilot, loaded(app, first_step + 3))
        assert "running" in text_of(app.query_one(RunHeader))
        assert app.query_one(EvalTable).row_count == sum(r["event"] == "eval" for r in recs[:first_step])
        assert len(app.query_one("#plot-loss", MetricPlot).lines[0].xs) == 3
        assert first_eval < first_step

        # a partial line is not parsed until its newline arrives
        line = json.dumps(recs[first_step + 3])
        append(path, line[:25], newline=False)
        await pilot.pause(0.1)
        assert app.latest[0].step == recs[first_step + 2]["step"]
        append(path, line[25:])
        await until(pilot, loaded(app, first_step + 4))
        assert app.shown[0].step == recs[first_step + 3]["step"]

        append(path, *map(json.dumps, recs[first_step + 4:]))
        await until(pilot, loaded(app, len(recs)))
        assert "completed" in text_of(app.query_one(RunHeader))
        assert app.query_one(EvalTable).row_count == sum(r["event"] == "eval" for r in recs)


@run_async
async def test_garbage_and_truncation_do_not_crash_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    shutil.copy(TINY, path)
    n = len(records(TINY))
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app, n))
        append(path, "not json at all", '{"event": "step", "step": "x"}')
        await until(pilot, loaded(app, n + 2))
        assert app.shown[0].malformed == 2
        assert "2 malformed lines skipped" in app.query_one(EventLog).border_subtitle
        assert "malformed" in log_text(app)

        # the run directory is reused: the file is cut short and a new run starts in it
        first = records(TINY)[0]
        first["run_name"] = "second-run"
        path.write_text(json.dumps(first) + "\n" + '{"event": "st', encoding="utf-8")
        await until(pilot, lambda: app.shown[0] is not None and app.shown[0].generation == 1)
        assert "second-run" in text_of(app.query_one(RunHeader))
        assert app.query_one(EvalTable).row_count == 0
        assert "malformed" not in log_text(app)
        assert "incomplete" in app.query_one(EventLog).border_subtitle


@run_async
async def test_without_follow_the_plots_keep_what_was_shown(tmp_path):
    path = tmp_path / "metrics.jsonl"
    recs = records(TINY)
    cut = next(i for i, r in enumerate(recs) if r["event"] == "step") + 5
    append(path, *map(json.dumps, recs[:cut]))
    app = app_for(path, follow=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app, cut))
        points = len(app.query_one("#plot-loss", MetricPlot).lines[0].xs)
        append(path, *map(json.dumps, recs[cut:cut + 4]))
        await until(pilot, lambda: "4 new lines" in text_of(app.query_one(TitleBar)))
        assert app.latest[0].lines == cut + 4
        assert len(app.query_one("#plot-loss", MetricPlot).lines[0].xs) == points
        assert f"step {recs[cut + 3]['step']}" in text_of(app.query_one("#step-label"))  # progress stays live
        await pilot.press("f")
        await until(pilot, lambda: len(app.query_one("#plot-loss", MetricPlot).lines[0].xs) > points)
        assert "following" in text_of(app.query_one(TitleBar))


@run_async
async def test_without_follow_a_run_that_starts_later_is_still_shown(tmp_path):
    path = tmp_path / "metrics.jsonl"
    app = app_for(path, follow=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.latest[0] is not None)
        shutil.copy(TINY, path)
        await until(pilot, loaded(app, len(records(TINY))))
        assert app.query_one(EvalTable).row_count == sum(r["event"] == "eval" for r in records(TINY))


@run_async
async def test_lines_arriving_behind_the_help_screen_are_drawn(tmp_path):
    path = tmp_path / "metrics.jsonl"
    recs = records(TINY)
    append(path, *map(json.dumps, recs[:-5]))
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app, len(recs) - 5))
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        append(path, *map(json.dumps, recs[-5:]))
        await until(pilot, loaded(app, len(recs)))
        await pilot.pause(1.1)  # a clock tick of the header, too
        await pilot.press("escape")
        assert "completed" in text_of(app.query_one(RunHeader))


@pytest.mark.parametrize("key", ["q", "f", "question_mark", "tab"])
@run_async
async def test_keys(key):
    app = app_for(TINY)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        focused = app.focused
        await pilot.press(key)
        await pilot.pause()
        if key == "q":
            assert app.return_code == 0  # exit() was called; the shutdown itself is asynchronous
        elif key == "f":
            assert not app.follow and "paused" in text_of(app.query_one(TitleBar))
            await pilot.press("f")
            assert app.follow and "following" in text_of(app.query_one(TitleBar))
        elif key == "question_mark":
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
        elif key == "tab":
            assert app.focused is not None and app.focused is not focused
            seen = {app.focused.id}
            for _ in range(10):
                await pilot.press("tab")
                seen.add(app.focused.id)
            assert {"plot-loss", "evals", "events"} <= seen


@run_async
async def test_two_runs_are_compared(tmp_path):
    paths = [DATA / "tui_gpu_run_metrics.jsonl", DATA / "tui_running_run_metrics.jsonl"]
    app = DashboardApp(paths, poll_interval=0.02, clock=lambda: after_end(paths[0]))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: all(loaded(app, index=i)() for i in range(2)))
        table = app.query_one(RunsTable)
        names = [records(p)[0]["run_name"] for p in paths]
        assert [str(table.get_row_at(i)[1]) for i in range(2)] == names
        loss = app.query_one("#compare-loss", MetricPlot)
        bal = app.query_one("#compare-bal", MetricPlot)
        assert [line.label for line in loss.lines] == names == [line.label for line in bal.lines]
        val = [r["balanced_accuracy"] for r in records(paths[1]) if r["event"] == "eval" and r["split"] == "validation"]
        assert bal.lines[1].ys == val


@pytest.mark.parametrize("keys", [("ctrl+c",), ("question_mark", "q")], ids=["ctrl+c", "q-in-help"])
@run_async
async def test_quit_keys(keys):
    app = app_for(TINY)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        await pilot.press(*keys)
        await pilot.pause()
        assert app.return_code == 0


@run_async
async def test_f_moves_the_evaluation_cursor_back_to_the_newest():
    n = sum(r["event"] == "eval" for r in records(TINY))
    app = app_for(TINY)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        table = app.query_one(EvalTable)
        table.focus()
        await pilot.press("f", "up", "up", "f")
        await pilot.pause()
        assert table.cursor_row == n - 1


def _header_for(first: dict) -> str:
    from tui.state import RunState
    state = RunState()
    state.feed([json.dumps(first)])
    return _plain(RunHeader.render_snapshot(state.snapshot(), first["time"], 60.0))


def _plain(renderable) -> str:
    console = Console(width=SIZE[0], file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("world_size", [1, 2])
def test_the_device_counts_processes_not_the_machine_s_gpus(world_size):
    first = records(DATA / "tui_gpu_run_metrics.jsonl")[0]
    first["device"]["count"] = 2
    first["world_size"] = world_size
    first["params"]["total"] = 2.8e9
    header = _header_for(first)
    name = first["device"]["name"]
    assert (f"{name} × 2" in header) == (world_size == 2)
    assert "2.8B" in header


def test_one_epoch_is_singular():
    from tui.state import RunState
    first = records(TINY)[0]
    first["planned"].update(epochs=1, total_steps=first["planned"]["steps_per_epoch"])
    state = RunState()
    state.feed([json.dumps(first)])
    assert "(1 epoch ×" in state.snapshot().events[0].text


@run_async
async def test_a_file_of_other_lines_says_it_is_not_a_metrics_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.latest[0] is not None)
        append(path, "root:x:0:0:root:/root:/bin/bash", "daemon:x:1:1::/usr/sbin:/usr/sbin/nologin")
        await until(pilot, lambda: app.latest[0] is not None and app.latest[0].lines == 2)
        await pilot.pause(1.1)  # the header's tick
        header = text_of(app.query_one(RunHeader))
        assert "not a metrics file" in header and "waiting" not in header


@run_async
async def test_a_deleted_file_is_noticed(tmp_path):
    path = tmp_path / "metrics.jsonl"
    shutil.copy(TINY, path)
    app = app_for(path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, loaded(app))
        path.unlink()
        await until(pilot, lambda: not app.latest[0].exists)
        await pilot.pause(1.1)
        header = text_of(app.query_one(RunHeader))
        assert "deleted" in header and records(TINY)[0]["run_name"] in header
