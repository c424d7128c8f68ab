"""Leaving a command's process once its work is done, without the interpreter's teardown.

At shutdown Python runs its cyclic garbage collector over every object still alive: with torch,
transformers and peft imported, 1.7 s on a 2-core machine of the train command's whole time from the
shell (0.24 s frozen; docs/benchmarks.md, issue 14's seventh round). Frozen (gc.freeze), those objects
were left to the operating system, which takes back an exiting process's memory anyway, but the
interpreter still tore its modules down; and where Triton 3.9 is installed (bitsandbytes imports it
when it is, as on every CUDA machine) its nanobind bindings then found their objects alive and printed
"nanobind: leaked 64 types!" and a hundred lines more to stderr after every command.

So the process ends with os._exit once atexit handlers have run (logging's flush among them) and the
standard streams are flushed, Python's and C's (a library's printf into a pipe is buffered in C; the
CUDA runtime's own teardown is left to the driver, which takes back an exiting process's memory).
Threads still running end with it: everything a command writes it closes itself before it returns
(the checkpoint writer's last write included), and what is left are pools of idle workers
(inductor's compilation threads, whose shutdown hook would have to run before joining them: joining
them first waits forever). No finalizer of an object alive at exit was promised to run."""

from __future__ import annotations

import atexit
import ctypes
import os
import sys
from typing import NoReturn


def exit_with(code: int | None) -> NoReturn:
    atexit._run_exitfuncs()  # what the interpreter's shutdown runs first (CPython's own, kept since 3.0)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to write
            pass
    try:
        ctypes.CDLL(None).fflush(None)  # every C stdio stream
    except (OSError, AttributeError):  # no C library to ask (not on Linux or macOS)
        pass
    os._exit(0 if code is None else code)
