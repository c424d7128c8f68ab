"""Leaving a command's process once its work is done, without the interpreter's last garbage collection.

At shutdown Python runs its cyclic garbage collector over every object still alive: with torch,
transformers and peft imported, 1.7 s on a 2-core machine of the train command's whole time from the
shell (0.24 s frozen; docs/benchmarks.md, issue 14's seventh round). Frozen (gc.freeze), those objects
are left to the operating system, which takes back an exiting process's memory anyway. atexit
handlers still run, standard streams are flushed, and objects freed by reference counting are freed as
before: what is skipped is collecting cycles among them, whose finalizers Python never promised to
run at exit. Everything a command writes is closed by the command itself before it returns."""

from __future__ import annotations

import gc
import sys
from typing import NoReturn


def exit_with(code: int | None) -> NoReturn:
    gc.freeze()
    sys.exit(code)
