"""Ctrl-C, SIGTERM and SIGHUP: stop cleanly where a checkpoint can be taken, at once when asked twice.

The CLI installs one StopFlag before setup. While nothing is worth saving (setup), a signal
stops at once. Once the loop sets mode "graceful", SIGINT or SIGTERM only sets `requested`: the
loop saves a checkpoint at the next step boundary and raises Interrupted. A second Ctrl-C raises
StopNow (a KeyboardInterrupt) from wherever the program is; the atomic writers undo any half
save, so the previous checkpoint stays the one a resume starts from.

SIGHUP (the terminal closed) is a SIGTERM whose terminal is gone: output goes to /dev/null from
then on, so writing progress to a dead terminal cannot fail the checkpoint. A signal the process
was started ignoring (nohup, a background job's SIGINT) stays ignored."""

from __future__ import annotations

import os
import signal


class Interrupted(Exception):
    """Raised by the loop after it saved an interrupt checkpoint."""


class StopNow(KeyboardInterrupt):
    """Stop immediately: a second Ctrl-C, or a signal before training has anything to save."""


def _say(message: str) -> None:
    # os.write, not print: a handler that prints while the program is printing to the same
    # buffered stream fails with "reentrant call"
    try:
        os.write(2, (message + "\n").encode())
    except OSError:
        pass


def _detach_terminal() -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(null, fd)
    os.close(null)


class StopFlag:
    """What a signal does depends on `mode`: "immediate" (setup: nothing to save yet), "graceful"
    (the loop runs: checkpoint at the next step boundary), "noted" (finishing up: just record it)."""

    def __init__(self, announce=None):
        self.requested: str | None = None  # "SIGINT" / "SIGTERM" once a stop was asked for
        self.mode = "immediate"
        self._announce = announce or _say
        self._previous = {}

    def install(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                if sig != signal.SIGTERM and signal.getsignal(sig) == signal.SIG_IGN:
                    continue
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner's worker)
                pass
        return self

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            _detach_terminal()
        first = self.requested is None
        self.requested = self.requested or name
        if self.mode == "immediate":
            raise StopNow(f"stopped by {name} before training started")
        if self.mode == "noted":
            return
        if first:
            self._announce(f"{name}: saving a checkpoint after the current step, then stopping "
                           f"(press Ctrl-C again to stop at once)")
        elif signum == signal.SIGINT:
            raise StopNow("stopped at once by a second Ctrl-C")

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
