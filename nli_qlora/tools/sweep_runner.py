"""Run training commands in parallel slots: one process per slot, a slot pinned to a GPU.

Each variant is its own `python -m nli_qlora.train` process, so a crash, an out-of-memory error
or a stop in one cannot touch another, and each run directory is exactly what the train CLI
writes. A slot is a GPU index (CUDA_VISIBLE_DEVICES) or, on a CPU, just a place in the queue.
Several slots may share a GPU: a small model's step is bound by kernel launches and host work,
so two processes on one GPU finish a stage sooner than one (their step times are then not
comparable with a lone run's; the scores are)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    name: str
    argv: list[str]
    log: Path


@dataclass
class Done:
    job: Job
    exit_code: int
    wall_s: float
    slot: str


@dataclass
class Slots:
    """Where jobs run: environment overrides per slot."""
    envs: list[dict] = field(default_factory=lambda: [{}])

    @classmethod
    def make(cls, devices: list[str] | None, per_device: int) -> "Slots":
        if not devices:
            return cls([{} for _ in range(per_device)])
        return cls([{"CUDA_VISIBLE_DEVICES": d} for d in devices for _ in range(per_device)])


class Runner:
    """Run jobs on slots; `stop()` (from a signal handler) ends running jobs the way a user's
    SIGTERM does, so each saves a checkpoint and a rerun of the sweep resumes it."""

    def __init__(self, slots: Slots):
        self.slots = slots
        self.stopping = threading.Event()
        self._procs: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Forward the signal: the jobs run in their own sessions, so a terminal's Ctrl-C reaches
        them only through here, once (twice would mean "stop now, no checkpoint" to the train CLI)."""
        self.stopping.set()
        with self._lock:
            for proc in self._procs.values():
                if proc.poll() is None:
                    proc.send_signal(signum)

    def run(self, jobs: list[Job], on_done) -> None:
        """Run every job (unless stopping); `on_done(Done)` is called in this thread, one at a time."""
        free: queue.Queue = queue.Queue()
        for i in range(len(self.slots.envs)):
            free.put(i)
        results: queue.Queue = queue.Queue()
        pending = list(jobs)
        running = 0
        while pending or running:
            while pending and not self.stopping.is_set() and not free.empty():
                slot = free.get()
                job = pending.pop(0)
                threading.Thread(target=self._one, args=(job, slot, free, results), daemon=True).start()
                running += 1
            if not running:
                break  # stopping: nothing left in flight
            on_done(results.get())
            running -= 1

    def _one(self, job: Job, slot: int, free: queue.Queue, results: queue.Queue) -> None:
        env = {**os.environ, **self.slots.envs[slot], "PYTHONUNBUFFERED": "1"}
        job.log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        code = 130
        with open(job.log, "ab") as log:
            log.write(f"$ {' '.join(job.argv)}\n".encode())
            log.flush()
            if not self.stopping.is_set():
                proc = subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
                with self._lock:
                    self._procs[slot] = proc
                if self.stopping.is_set():  # stop() ran between the check and the registration
                    proc.send_signal(signal.SIGTERM)
                code = proc.wait()
                with self._lock:
                    self._procs.pop(slot, None)
        label = self.slots.envs[slot].get("CUDA_VISIBLE_DEVICES", "cpu")
        results.put(Done(job, code, time.perf_counter() - start, f"{label}/{slot}"))
        free.put(slot)


def train_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "nli_qlora.train", *args]
