"""A command's process ends with its status, after its atexit handlers and with every buffered line
written (Python's and C's), while a pool of idle non-daemon workers is still alive (inductor keeps
one), and without the interpreter's teardown, where Triton 3.9's bindings printed leak warnings."""

import subprocess
import sys

CHILD = r"""
import atexit, ctypes, gc
from concurrent.futures import ThreadPoolExecutor
from nli_qlora.infra.process_exit import exit_with
pool = ThreadPoolExecutor(max_workers=1)
pool.submit(lambda: None).result()  # an idle worker thread, not a daemon, never shut down
atexit.register(lambda: print("atexit handler ran"))
ctypes.CDLL(None).printf(b"from C, buffered in a pipe\n")
print("from Python", flush=False)
gc.freeze()  # objects left alive at exit: a teardown would meet them
exit_with(3)
"""


def test_the_exit_status_buffers_and_atexit_handlers_survive_the_fast_exit():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["atexit handler ran", "from C, buffered in a pipe", "from Python"]
    assert proc.stderr == ""


def test_a_run_exits_0_when_main_returns_none():
    proc = subprocess.run([sys.executable, "-c", "from nli_qlora.infra.process_exit import exit_with; exit_with(None)"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
