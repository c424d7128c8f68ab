"""Write-then-rename, so no reader ever sees a half-written file or checkpoint.

Every file is fsynced before its rename and the directory after it, so a power loss (not only a
killed process) leaves either the old file or the whole new one. What a crash can leave behind
(`.NAME.*.tmp` files, `.tmp-NAME-*` and `.old-NAME-*` directories) is never read as data and is
removed by `remove_leftovers` when a run resumes."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> None:
    with open_atomic(path, "wb") as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


@contextmanager
def open_atomic(path: str | Path, mode: str = "w", **kw):
    """A file object that becomes `path` only when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with open(tmp, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def staged_dir(path: str | Path, replace: bool = True):
    """A directory filled under a temporary name and renamed into place when the block succeeds.

    A crash inside the block leaves only a `.tmp-*` directory, which readers ignore. With
    `replace=False` a complete directory already in place wins (a cache two processes filled at
    once): this one is discarded, and nobody reads a directory that is being swapped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}-"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        for f in tmp.rglob("*"):  # the libraries that filled it do not fsync
            if f.is_file():
                _fsync_file(f)
        write_text(tmp / "COMPLETE", "ok\n")
        if not replace and (path / "COMPLETE").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
        elif path.exists() and replace:  # two renames: a crash between them is repaired by remove_leftovers
            old = path.with_name(f".old-{path.name}-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, path)
            except OSError:  # another process put its complete copy there first
                if replace or not (path / "COMPLETE").is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_leftovers(directory: str | Path) -> list[str]:
    """Remove what crashed writers left in `directory` (not recursive); return the names removed.

    A `.old-NAME-PID` directory whose NAME is missing is the previous copy of a directory that was
    being replaced when the crash came: it is renamed back instead."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.iterdir()):
        name = entry.name
        if entry.is_dir() and name.startswith(".old-"):
            original = directory / name[len(".old-"):].rsplit("-", 1)[0]
            if not original.exists():
                os.replace(entry, original)
                continue
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_dir() and name.startswith(".tmp-"):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_file() and name.startswith(".") and name.endswith(".tmp"):
            entry.unlink(missing_ok=True)
        else:
            continue
        removed.append(name)
    return removed
