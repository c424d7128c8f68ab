"""One process per run directory: a second `--resume` of a run that is still going would truncate
its metrics file under it. The lock is an flock on RUN_DIR/.lock, which the kernel drops when the
holder dies (kill -9 included), so a crashed run never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from nli_qlora.infra.errors import UserError

_held: dict[str, int] = {}  # run dir -> fd, kept open for the life of the process


def lock_run_dir(run_dir: Path, flag: str) -> None:
    key = str(Path(run_dir).resolve())
    if key in _held:
        return
    path = Path(run_dir) / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise UserError(f"{flag}: {run_dir} is in use by process {holder}; wait for it or stop it first") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = fd


def unlock_run_dir(run_dir: Path) -> None:
    fd = _held.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)
