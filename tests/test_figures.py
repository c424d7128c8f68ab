"""The report's pictures drawn by a second process (run.figure_worker), with a recorded tiny run's
metrics file: the worker writes what the report draws in the command's process, redraws a learning
curve whose records changed after its early draw, answers None without matplotlib, and leaves the
pictures to the command when it dies; a run that ends otherwise (killed, or its stdin closed) leaves
nothing written.
That the train command's pictures are the ones `nli_qlora.report` draws is test_train_e2e's
rebuilt-report test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nli_qlora.run import figures
from nli_qlora.run.figure_worker import DRAWN, READY, FigureWorker
from nli_qlora.run.metrics import read_metrics
from nli_qlora.run.report import summarize_run, write_report

RECORDED = Path(__file__).resolve().parent / "data" / "tiny_run_metrics.jsonl"
PICTURES = [figures.LEARNING_CURVE, figures.CONFUSION_MATRIX]


def run_dir(path: Path, lines: list[str] | None = None) -> Path:
    path.mkdir()
    if lines is None:
        shutil.copy(RECORDED, path / "metrics.jsonl")
    else:
        (path / "metrics.jsonl").write_text("".join(lines))
    return path


def drawn_here(path: Path) -> dict[str, bytes]:
    """The pictures as the command's own process draws them."""
    records = read_metrics(path / "metrics.jsonl")
    assert figures.write_figures(path, records, summarize_run(path, records)["after"]) == PICTURES
    return {name: (path / name).read_bytes() for name in PICTURES}


def test_the_worker_writes_the_pictures_the_report_draws_in_its_own_process(tmp_path):
    mine = run_dir(tmp_path / "worker")
    worker = FigureWorker.start(mine)
    worker.curve()
    assert worker.finish() == (True, PICTURES)
    assert worker.proc.returncode == 0
    expected = drawn_here(run_dir(tmp_path / "here"))
    assert {name: (mine / name).read_bytes() for name in PICTURES} == expected


def test_a_learning_curve_drawn_early_is_drawn_again_when_its_records_changed(tmp_path):
    lines = RECORDED.read_text().splitlines(keepends=True)
    last_step = max(i for i, line in enumerate(lines) if json.loads(line)["event"] == "step")
    mine = run_dir(tmp_path / "worker", lines[:last_step])  # told "curve" before the last step is on disk
    worker = FigureWorker.start(mine)
    assert worker.proc.stdout.readline().strip() == READY
    worker.curve()
    assert worker.proc.stdout.readline().strip() == DRAWN  # the curve of the records it found
    with open(mine / "metrics.jsonl", "a") as f:
        f.writelines(lines[last_step:])
    assert worker.finish() == (True, PICTURES)
    assert {name: (mine / name).read_bytes() for name in PICTURES} == drawn_here(run_dir(tmp_path / "here"))


def test_without_matplotlib_the_worker_answers_none_and_the_report_says_how_to_get_the_pictures(tmp_path, monkeypatch):
    hidden = tmp_path / "hide" / "matplotlib"  # found before the installed one, failing as an absent package does
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError(\"No module named 'matplotlib'\")\n")
    monkeypatch.setenv("PYTHONPATH", str(hidden.parent))
    mine = run_dir(tmp_path / "worker")
    worker = FigureWorker.start(mine)
    assert worker.finish() == (True, None)
    assert not list(mine.glob("*.png"))


def test_a_worker_that_died_leaves_the_pictures_to_the_command(tmp_path):
    mine = run_dir(tmp_path / "worker")
    worker = FigureWorker.start(mine)
    worker.proc.kill()
    summary = write_report(mine, worker=worker)
    assert summary["figures"] == PICTURES
    assert {name: (mine / name).read_bytes() for name in PICTURES} == drawn_here(run_dir(tmp_path / "here"))


def test_a_run_that_ends_otherwise_leaves_nothing_written(tmp_path):
    killed, left = run_dir(tmp_path / "killed"), run_dir(tmp_path / "left")
    first, second = FigureWorker.start(killed), FigureWorker.start(left)
    for worker in (first, second):
        assert worker.proc.stdout.readline().strip() == READY
        worker.curve()
        assert worker.proc.stdout.readline().strip() == DRAWN
    first.close()  # the run failed or stopped: the command kills it
    second.proc.stdin.close()  # the command went away without a word
    assert first.proc.returncode is not None and second.proc.wait() == 0
    for mine in (killed, left):
        assert sorted(p.name for p in mine.iterdir()) == ["metrics.jsonl"]
