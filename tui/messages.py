"""Every message the dashboard's reader thread sends to the UI, in one place."""

from __future__ import annotations

from textual.message import Message

from tui.state import RunSnapshot


class RunUpdated(Message):
    """New lines of run ``index`` were folded; ``snapshot`` is the whole run as of now.

    A snapshot supersedes any older one of the same run still waiting in the queue, so a burst
    of lines costs one redraw, not one per batch."""

    def __init__(self, index: int, snapshot: RunSnapshot) -> None:
        super().__init__()
        self.index = index
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunUpdated) and message.index == self.index
