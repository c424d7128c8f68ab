"""What a module file costs the import system on this host: the train command's imports listed by
`python -X importtime` (a tiny run), imported again here, then their files stat-ed and read by loops:
sequential twice, and by 8 threads; beside a null system call, for the host's cost of a system call.

    python fsprobe.py -- TRAIN_ARGS...
"""
import importlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

args = sys.argv[sys.argv.index("--") + 1:]
t = time.perf_counter()
p = subprocess.run([sys.executable, "-X", "importtime", "-m", "nli_qlora.train", *args],
                   capture_output=True, text=True)
whole = time.perf_counter() - t
names = [line.split("|")[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")][1:]
t = time.perf_counter()
for n in names:
    try:
        importlib.import_module(n)
    except BaseException:
        pass
imported = time.perf_counter() - t
files = []
for m in list(sys.modules.values()):
    spec = getattr(m, "__spec__", None)
    if spec and spec.origin and os.path.isfile(spec.origin):
        files.append((spec.origin, spec.cached if spec.cached and os.path.isfile(spec.cached) else spec.origin))


def stat_all():
    for src, _ in files:
        os.stat(src)


def read_all():
    for _, data in files:
        with open(data, "rb") as f:
            f.read()


def timed(fn):
    t = time.perf_counter(); fn(); return round(time.perf_counter() - t, 4)


def null_calls(n=20000):
    for _ in range(n):
        os.getppid()


def threaded():
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda f: open(f[1], "rb").read(), files))


out = {"train_rc": p.returncode, "train_shell_s": round(whole, 3), "modules_listed": len(names),
       "import_again_s": round(imported, 3), "files": len(files),
       "stat_s": [timed(stat_all) for _ in range(2)], "read_s": [timed(read_all) for _ in range(2)],
       "read_8_threads_s": timed(threaded), "null_syscall_us": round(timed(null_calls) / 20000 * 1e6, 2),
       "dirs": sorted({os.path.dirname(f[1]).split("/site-packages/")[0].split("/pyc/")[0] for f in files})[:12]}
print(json.dumps(out))
