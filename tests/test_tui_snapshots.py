"""A few SVG snapshots of whole screens (pytest-textual-snapshot), at a fixed size and a fixed
"now". They use the tests/data/tui_* files, which stay as they are (tiny_run_metrics.jsonl may be
re-recorded). Update after a deliberate change with:
    python -m pytest tests/test_tui_snapshots.py --snapshot-update
"""

import json
from pathlib import Path

from tui.app import DashboardApp

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
