"""Follow a growing file by polling: read from a saved byte offset, hand back whole lines only.

A training run appends to its metrics file while the dashboard reads it, so a read can end in
the middle of a line; that tail is kept until its newline arrives. The file may not exist yet
(the dashboard was started first), may be truncated (size below our offset, or its first bytes
changed) or replaced (a new inode at the same path, e.g. the run directory was reused); then
reading starts over from byte 0
and the result says ``reset`` so the caller can drop what it folded. No Textual here: this is
plain file logic, tested on its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CHUNK_BYTES = 1 << 20  # one read() call
HEAD_BYTES = 256  # a fingerprint of the file's start: catches a rewrite that grew past our offset
TAIL_BYTES = 256  # and of the bytes just before our offset: a cut back in place, then appended past it
                  # (what a resume does to metrics.jsonl), keeps the start and the inode
MAX_BYTES_PER_POLL = 4 << 20  # caps one poll so a huge file arrives in several batches


@dataclass
class TailResult:
    """What one poll found."""

    lines: list[str] = field(default_factory=list)  # complete lines, newline stripped
    reset: bool = False  # the file was truncated or replaced: drop everything read before
    exists: bool = True
    more: bool = False  # stopped at MAX_BYTES_PER_POLL: poll again at once
    size: int = 0  # the file's size when polled
    error: str | None = None  # an OS error other than "not there yet", in one line


class FileTail:
    """Polls one path; each ``poll()`` returns the complete lines appended since the last."""

    def __init__(self, path: str | Path, max_bytes: int = MAX_BYTES_PER_POLL, chunk_bytes: int = CHUNK_BYTES):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes
        self.offset = 0  # bytes consumed, including the buffered partial line
        self._partial = b""
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we read
        self._head = b""  # the first HEAD_BYTES we read
        self._tail = b""  # the last TAIL_BYTES we read, ending at offset

    @property
    def pending_bytes(self) -> int:
        """Bytes of a last line still waiting for its newline."""
        return len(self._partial)

    def _start_over(self) -> None:
        self.offset = 0
        self._partial = b""
        self._head = b""
        self._tail = b""

    def _rewritten(self, f, identity: tuple[int, int], size: int) -> bool:
        if self._identity is None:
            return False
        if identity != self._identity or size < self.offset:
            return True
        if f.read(len(self._head)) != self._head:
            return True
        f.seek(self.offset - len(self._tail))
        return f.read(len(self._tail)) != self._tail

    def poll(self) -> TailResult:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return TailResult(exists=False)
        except OSError as err:
            return TailResult(exists=self.path.exists(), error=f"cannot read {self.path}: {err.strerror or err}")
        with f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            result = TailResult(size=st.st_size)
            if self._rewritten(f, identity, st.st_size):
                self._start_over()
                result.reset = True
            self._identity = identity
            if st.st_size == self.offset:
                return result
            f.seek(self.offset)
            data = self._read(f)
        result.more = len(data) >= self.max_bytes
        if len(self._head) < HEAD_BYTES:
            self._head = (self._head + data)[:HEAD_BYTES]
        self._tail = (self._tail + data)[-TAIL_BYTES:]
        self.offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        result.lines = [line.decode("utf-8", errors="replace") for line in complete]
        return result

    def _read(self, f) -> bytes:
        parts: list[bytes] = []
        size = 0
        while size < self.max_bytes:
            chunk = f.read(min(self.chunk_bytes, self.max_bytes - size))
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)
