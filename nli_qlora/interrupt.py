"""Ctrl-C and SIGTERM: the first asks the loop to checkpoint and stop after the current step;
a second Ctrl-C stops at once."""

from __future__ import annotations

import signal


class Interrupted(Exception):
    """Raised by the loop after it saved an interrupt checkpoint."""


class StopFlag:
    def __init__(self):
        self.requested: str | None = None
        self._previous = {}

    def install(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner's worker)
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
