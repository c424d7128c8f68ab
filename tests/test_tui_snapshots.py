"""A few SVG snapshots of whole screens (pytest-textual-snapshot), at a fixed size and a fixed
"now". They use the tests/data/tui_* files, which stay as they are (tiny_run_metrics.jsonl may be
re-recorded). Update after a deliberate change with:
    python -m pytest tests/test_tui_snapshots.py --snapshot-update
"""

import json
from pathlib import Path

from test_tui_app import sweep_variant
from tui.app import DashboardApp
from tui.widgets.events import EventLog

import pytest

ROOT = Path(__file__).parent.parent
DATA = Path("tests") / "data"  # relative: the title shows the path as given, and CI clones elsewhere
SIZE = (140, 45)


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def last_time(path: Path) -> float:
    return json.loads(path.read_text(encoding="utf-8").splitlines()[-1])["time"]


def snapshot_app(*names: str) -> tuple[DashboardApp, object]:
    """The app on these files, "now" 3 s after the last line of the first (a running run looks live)."""
    paths = [DATA / name for name in names]
    now = last_time(paths[0]) + 3.0
    app = DashboardApp(paths, clock=lambda: now, poll_interval=0.02)

    async def wait_until_drawn(pilot) -> None:
        while not all(s is not None and s.caught_up for s in app.shown):
            await pilot.pause(0.02)
        await pilot.pause()
        # the compare view rewrites its merged events as later runs' lines arrive, and follows the
        # newest after the next refresh: wait for that, not for a fixed time
        for _ in range(500):  # a bound: a log that never follows is then a snapshot mismatch, not a hang
            if not any(log.auto_scroll and log.scroll_y < log.max_scroll_y for log in app.query(EventLog)):
                break
            await pilot.pause(0.02)

    return app, wait_until_drawn


def test_a_completed_gpu_run(snap_compare):
    app, ready = snapshot_app("tui_gpu_run_metrics.jsonl")
    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_a_running_run_with_its_eta(snap_compare):
    app, ready = snapshot_app("tui_running_run_metrics.jsonl")
    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_three_runs_compared(snap_compare):
    app, ready = snapshot_app("tui_running_run_metrics.jsonl", "tui_gpu_run_metrics.jsonl",
                              "tui_failed_run_metrics.jsonl")
    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_a_completed_run_at_80x24(snap_compare):
    """The compact layout: a shorter header, the plots page, a footer of page keys."""
    app, ready = snapshot_app("tui_gpu_run_metrics.jsonl")
    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_zoomed_log_scale_with_a_cursor(snap_compare):
    """+ zooms to the later half, l a log y axis, c and . a cursor with its readout."""
    app, ready = snapshot_app("tui_gpu_run_metrics.jsonl")

    async def controls(pilot) -> None:
        await ready(pilot)
        await pilot.press("plus", "l", "c", "full_stop")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=controls)


def test_three_runs_compared_at_80x24_page_2_is_the_runs_side_by_side(snap_compare):
    """Compact compare view: page 2 the runs table on its side (every number whole), page 3 the events."""
    app, ready = snapshot_app("tui_running_run_metrics.jsonl", "tui_gpu_run_metrics.jsonl",
                              "tui_failed_run_metrics.jsonl")

    async def page_2(pilot) -> None:
        await ready(pilot)
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=page_2)


def test_a_sweep_folder_is_a_list_of_its_runs(snap_compare, tmp_path, monkeypatch):
    """python -m tui SWEEP_DIR: the runs by score, the chosen one starred, at 80x24."""
    variants = []
    for name, data, score in (("b8-l512", "tui_gpu_run_metrics.jsonl", 0.828),
                              ("b32-l256", "tui_running_run_metrics.jsonl", None),
                              ("b64-l1024", "tui_failed_run_metrics.jsonl", None)):
        (tmp_path / "sweep" / name).mkdir(parents=True)
        (tmp_path / "sweep" / name / "metrics.jsonl").write_bytes((ROOT / DATA / data).read_bytes())
        variants.append(sweep_variant(name, "completed", score))
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps({"variants": variants, "chosen": "b8-l512"}))
    now = last_time(ROOT / DATA / "tui_running_run_metrics.jsonl") + 3.0
    monkeypatch.chdir(tmp_path)
    app = DashboardApp([], folder=Path("sweep"), clock=lambda: now)

    async def listed(pilot) -> None:
        while not getattr(app.screen, "rows", None):
            await pilot.pause(0.02)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=listed)
