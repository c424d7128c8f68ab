"""Leaving a command's process once its work is done, without the interpreter's teardown.

At shutdown Python runs its cyclic garbage collector over every object still alive: with torch,
transformers and peft imported, 1.7 s on a 2-core machine of the train command's whole time from the
shell (0.24 s frozen; docs/benchmarks.md, issue 14's seventh round). Frozen (gc.freeze), those objects
were left to the operating system, which takes back an exiting process's memory anyway, but the
interpreter still tore its modules down; and where Triton 3.9 is installed (bitsandbytes imports it
when it is, as on every CUDA machine) its nanobind bindings then found their objects alive and printed
"nanobind: leaked 64 types!" and a hundred lines more to stderr after every command.

So the process ends as the interpreter would end it, up to its teardown, and no further: threads that
are not daemons finish, atexit handlers run (logging's flush among them), the standard streams are
flushed, then os._exit. Everything a command writes is closed by the command itself before it
returns; no finalizer of an object alive at exit was promised to run."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_with(code: int | None) -> NoReturn:
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what the interpreter's shutdown runs first (CPython's own, kept since 3.0)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to write
            pass
    os._exit(0 if code is None else code)
