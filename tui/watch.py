"""Poll the metrics files of one or more runs and decide when each run's view is worth sending.

This is the loop body of the dashboard's reader thread, kept free of Textual so it can be tested
with real files alone. While a big file is being caught up, a run's snapshot is sent at most
every ``min_interval`` seconds (the UI shows how far reading got); once caught up, every change
is sent. Until a file is caught up for the first time, its snapshots leave out the plotted series:
the UI shows only how far reading got, and reducing 100,000 points each time would be wasted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from tui.state import RunSnapshot, RunState
from tui.tail import FileTail


class RunWatcher:
    def __init__(self, paths: list[Path], clock: Callable[[], float] = time.time, min_interval: float = 0.3,
                 max_points: int = 2000):
        self.tails = [FileTail(p) for p in paths]
        self.states = [RunState(source=str(p), max_points=max_points) for p in paths]
        self.clock = clock
        self.min_interval = min_interval
        self._live = [False] * len(paths)  # caught up once: later lines are live activity
        self._dirty = [True] * len(paths)  # the first poll always reports, even an empty file
        self._sent_at = [float("-inf")] * len(paths)
        self.busy = False  # some file had more to read than one poll takes

    def poll(self) -> list[tuple[int, RunSnapshot]]:
        """Read what is new in every file; return (run index, snapshot) for the runs due a redraw."""
        due = []
        self.busy = False
        for i, (tail, state) in enumerate(zip(self.tails, self.states)):
            got = tail.poll()
            if got.reset:
                state.reset()
            if got.lines:
                state.feed(got.lines, arrived=self.clock() if self._live[i] else None)
            file_view = (got.exists, not got.more, tail.pending_bytes, got.error)
            if got.reset or got.lines or file_view != (state.exists, state.caught_up, state.pending_bytes,
                                                        state.file_error):
                self._dirty[i] = True
            state.exists, state.caught_up, state.pending_bytes, state.file_error = file_view
            state.deleted = not got.exists and state.lines > 0
            state.read_fraction = tail.offset / got.size if got.size else 1.0
            self._live[i] = self._live[i] or state.caught_up
            self.busy = self.busy or got.more
            now = time.monotonic()
            if self._dirty[i] and (state.caught_up or now - self._sent_at[i] >= self.min_interval):
                # before the first catch-up nothing is plotted: the series wait (reducing them costs)
                due.append((i, state.snapshot(series=self._live[i])))
                self._dirty[i] = False
                self._sent_at[i] = now
        return due
