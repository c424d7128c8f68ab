"""Checkpoints written on a worker thread while the next steps train.

At a step boundary the recipe copies the checkpoint to host memory (checkpoint.snapshot: tens of
milliseconds); serializing, hashing, fsyncing and renaming it (checkpoint.write: about 0.3 s for
SmolLM2's adapter and optimizer, docs/benchmarks.md) then overlaps the steps that follow. A checkpoint
is announced in the metrics file, and counts as taken, only once it is complete on disk: the recipe
records it when `finished` hands it back.

One write at a time, in order: the recipe waits for the one in flight before the next checkpoint, a
stop, the test evaluation's end and the run's end. A failed write (a full disk) is raised there, in
the recipe's thread. The worker touches no live model state, and none of CUDA."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Write:
    path: Path
    future: Future
    record: dict  # the `checkpoint` metrics record's fields, logged once the write is complete


class BackgroundSaves:
    def __init__(self):
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Write | None = None

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def start(self, path: Path, work: Callable[[], object], record: dict) -> None:
        if self._pending is not None:
            raise RuntimeError("a checkpoint write is still in flight: take it with finished() first")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-write")
        self._pending = Write(Path(path), self._pool.submit(work), record)

    def finished(self, block: bool) -> Write | None:
        """The write in flight once it has ended (waiting for it when `block`), else None. Its error,
        if any, is in `future.result()`."""
        write = self._pending
        if write is None or not (block or write.future.done()):
            return None
        write.future.exception()  # waits; never raises the write's error here
        self._pending = None
        return write

    def close(self) -> None:
        """Let a write still in flight finish (an error path that skipped waiting for it), then stop the worker."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._pending = None
