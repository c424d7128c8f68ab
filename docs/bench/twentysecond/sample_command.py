"""Where a command's wall time goes, by sampling: a thread reads the main thread's stack about every 2 ms
and credits it with the wall time since the previous sample, to each function on it once (inclusive) and
to the innermost frame (own). A sample waits for the interpreter lock, so samples come less often while
the main thread holds it (imports): weighting by elapsed time, not by count, keeps their share. Unlike
cProfile it adds no cost per call, and C calls that wait (a GPU sync, a dlopen, file reads) count as they
do on the wall clock. (Call 1 of this round counted samples unweighted.)

    python sample_command.py OUT_PREFIX MODULE [ARGS...]     e.g. /tmp/s nli_qlora.train --model ...

Writes OUT_PREFIX.folded (stack;stack;... count, for flame graphs) and OUT_PREFIX.top (the inclusive and own
tables), and prints the seconds since the process started at the end."""

import atexit
import collections
import os
import runpy
import sys
import threading
import time

PERIOD = 0.002


def start_of_process() -> float:
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return time.time() - (up - ticks / os.sysconf("SC_CLK_TCK"))


def main() -> None:
    t0 = start_of_process()
    prefix, module, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    main_id = threading.get_ident()
    folded: collections.Counter = collections.Counter()
    marks: list[tuple[float, str]] = []
    stop = threading.Event()

    def name(code) -> str:
        f = code.co_filename
        for cut in ("site-packages/", "/nli_qlora/", "lib/python3"):
            if cut in f:
                f = f.split(cut, 1)[1]
                break
        return f"{f}:{code.co_name}"

    def sampler() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            frame = sys._current_frames().get(main_id)
            now = time.perf_counter()
            weight, last = now - last, now
            stack = []
            while frame is not None:
                stack.append(name(frame.f_code))
                frame = frame.f_back
            folded[";".join(reversed(stack))] += weight
            time.sleep(PERIOD)

    def report() -> None:  # at exit: the commands leave through os._exit after the atexit handlers
        if stop.is_set():
            return
        stop.set()
        thread.join()
        end = time.time() - t0
        total = sum(folded.values())
        incl, own = collections.Counter(), collections.Counter()
        for stack, n in folded.items():
            frames = stack.split(";")
            own[frames[-1]] += n
            for f in set(frames):
                incl[f] += n
        with open(prefix + ".folded", "w") as out:
            for stack, n in folded.most_common():
                out.write(f"{stack} {n:.6f}\n")
        with open(prefix + ".top", "w") as out:
            out.write(f"process {end:.3f} s, {total:.3f} s sampled\n")
            for title, table in (("inclusive", incl), ("own", own)):
                out.write(f"\n# {title}\n")
                for f, n in table.most_common(150):
                    out.write(f"{n:8.3f} s  {f}\n")
        print(f"sampled: process {end:.3f} s", file=sys.stderr)

    atexit.register(report)
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    sys.argv = [module] + args
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
