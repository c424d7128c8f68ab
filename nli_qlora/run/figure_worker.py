"""The report's pictures drawn by a second process, which waits beside the training loop.

matplotlib's import (0.3-0.5 s) and the two pictures (0.3 s) are interpreter work. On a thread of the
train command the import took turns with the final test evaluation's host thread for the interpreter
lock, and the pictures were drawn after `run_end`, while the user waited (docs/benchmarks.md, issue
14, twentieth round). A process of its own does both on another core:

    command                                      worker
    FigureWorker.start(run_dir) (train() begins)  imports matplotlib, says "ready", waits
    curve(): the last validation evaluation is    draws the learning curve from metrics.jsonl as it
      on disk ("curve")                             stands, says "drawn"
    finish(): run_end is on disk ("end")          rereads metrics.jsonl, redraws the curve if its
                                                    records changed, draws the confusion matrix,
                                                    writes both, answers their names

The pictures are figures.write_figures' own, so `python -m nli_qlora.report` draws the same bytes. A
worker that cannot start, dies or gives no answer costs nothing but time: the report then draws in the
command's process, as before. A run that ends otherwise (an error, a stop) kills it; it writes nothing
before "end", and leaves when its stdin closes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nli_qlora

CURVE, END = "curve", "end"  # the command's lines
READY, DRAWN = "ready", "drawn"  # the worker's progress, for whoever wants to wait for it (the tests)
ANSWER = "figures "  # the answer's prefix: nothing a library prints on stdout is taken for it
WAIT_S = 300  # an answer later than this is no answer: the command draws the pictures itself


class FigureWorker:
    """The command's side: one worker process for one run directory."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @classmethod
    def start(cls, run_dir: Path) -> FigureWorker | None:
        """None where no process can be started (the report then draws in this one)."""
        root = str(Path(nli_qlora.__file__).resolve().parents[1])  # the nli_qlora this process runs
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        try:
            proc = subprocess.Popen([sys.executable, "-m", "nli_qlora.run.figure_worker", str(run_dir)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env)
        except OSError:
            return None
        return cls(proc)

    def curve(self) -> None:
        """The learning curve's records are final: the worker draws it while the test evaluation runs."""
        try:
            self.proc.stdin.write(CURVE + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):  # it died: finish() finds out and the report draws here
            pass

    def finish(self) -> tuple[bool, list[str] | None]:
        """(answered, the files written or None without matplotlib), once run_end is on disk. Not
        answered: the worker died, gave no answer in WAIT_S or could not draw; nothing was promised."""
        try:
            out, _ = self.proc.communicate(END + "\n", timeout=WAIT_S)
        except (subprocess.TimeoutExpired, OSError, ValueError):
            self.close()
            return False, None
        answers = [line[len(ANSWER):] for line in out.splitlines() if line.startswith(ANSWER)]
        if self.proc.returncode != 0 or not answers:
            return False, None
        return True, json.loads(answers[-1])

    def close(self) -> None:
        """No worker outlives the command: one still running is killed (it writes only after "end")."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def main(argv: list[str]) -> int:
    # the command decides how a run ends (a Ctrl-C or a closed terminal reaches the whole process group):
    # this process ends when its stdin closes or it is killed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from nli_qlora.run import figures
    from nli_qlora.run.metrics import read_metrics

    run_dir = Path(argv[0])
    try:
        plt = figures.import_matplotlib()
    except ImportError:
        plt = None
    _say(READY)
    drawn = None  # (the records it was drawn from, the learning curve's PNG)
    for line in iter(sys.stdin.readline, ""):
        if line.strip() == CURVE:
            try:
                early = figures.curve_records(read_metrics(run_dir / "metrics.jsonl"))
                drawn = (early, figures.learning_curve_png(plt, *early)) if plt and (early[0] or early[1]) else None
            except (OSError, ValueError, KeyError):  # drawn at the end instead
                drawn = None
            _say(DRAWN)
        elif line.strip() == END:
            break
    else:  # stdin closed: the command went away before the run ended, so nothing is written
        return 0
    if plt is None:
        written = None
    else:
        records = read_metrics(run_dir / "metrics.jsonl")
        curve = drawn[1] if drawn is not None and drawn[0] == figures.curve_records(records) else None
        written = figures.write_figures(run_dir, records, figures.final_test(records), curve=curve)
    _say(ANSWER + json.dumps(written))
    return 0


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    from nli_qlora.infra.process_exit import exit_with

    exit_with(main(sys.argv[1:]))
