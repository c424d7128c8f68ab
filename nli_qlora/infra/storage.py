"""A write that fails because of the disk (full, read-only, quota, permissions) is the user's to
fix, not a bug: one line naming the path and the reason, exit status 2.

The libraries report it in different shapes: OSError from Python file objects, RuntimeError from
torch's zip writer (with the OSError as its context when torch writes through a Python file),
SafetensorError with "os error 28" in its text. `disk_errno` finds the errno in any of them."""

from __future__ import annotations

import errno
import os
import re
from contextlib import contextmanager
from pathlib import Path

from nli_qlora.infra.errors import UserError

# errno -> what the user can do about it
DISK_ERRNOS = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
               errno.EROFS: "choose a writable --output-dir", errno.EACCES: "check the permissions",
               errno.EPERM: "check the permissions", errno.EFBIG: "the file system limits file size",
               errno.ENOTDIR: "a file is in the way of a directory", errno.EIO: "the disk reported an error"}
_OS_ERROR_TEXT = re.compile(r"os error (\d+)|\[Errno (\d+)\]")


class DiskError(UserError):
    """Writing under the run directory failed for a reason outside the program."""


def disk_errno(err: BaseException) -> int | None:
    """The disk-related errno behind `err` (its chain of causes included), or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
            return err.errno
        for match in _OS_ERROR_TEXT.finditer(str(err)):
            code = int(match.group(1) or match.group(2))
            if code in DISK_ERRNOS:
                return code
        err = err.__cause__ or err.__context__
    return None


def disk_error(err: BaseException, path: str | Path, what: str = "write") -> DiskError | None:
    """A DiskError naming `path` (what was being written, not the temporary file that failed) when
    `err` is a disk failure, else None (a real bug)."""
    code = disk_errno(err)
    if code is None:
        return None
    return DiskError(f"cannot {what} {path}: {os.strerror(code)} ({DISK_ERRNOS[code]})")


@contextmanager
def writing(path: str | Path, what: str = "write"):
    """Turn a disk failure inside the block into a DiskError naming `path`; let bugs through."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        failure = disk_error(err, path, what)
        if failure is None:
            raise
        raise failure from err
