"""Facts about this machine and process that a run records: device, memory in use, library versions,
when the process started."""

from __future__ import annotations

import os
import resource
import time

import torch

from nli_qlora import IMPORTED_AT


def gb(n: float | None) -> float | None:
    return None if n is None else round(n / 2**30, 4)


_statm: tuple[int, int] | None = None  # (pid, descriptor of /proc/self/statm): opened once per process


def rss_gb() -> float:
    """This process's resident memory, recorded at every step. The file stays open and is read again
    from its start: opening it took 0.16 ms a step in the loop on a 2-core CPU, a fifth of the loop's
    work between steps. /proc/self resolves when opened, so a forked child opens its own."""
    global _statm
    if _statm is None or _statm[0] != os.getpid():
        _statm = (os.getpid(), os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC))
    return round(int(os.pread(_statm[1], 256, 0).split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30, 4)


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 4)  # Linux reports KiB


def default_device(index: int | None = None) -> torch.device:
    """The GPU (this process's, or the current one) where there is one, else the CPU: with its index, so
    that it compares equal to the devices tensors report."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device() if index is None else index)


def device_info(device: torch.device) -> dict:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "count": torch.cuda.device_count(),
                "total_memory_gb": gb(props.total_memory), "capability": f"{props.major}.{props.minor}"}
    return {"type": "cpu", "name": "cpu", "count": os.cpu_count(), "total_memory_gb": None, "capability": None}


def versions() -> dict:
    import bitsandbytes  # lazy: these import in seconds, and only a run's first record needs them
    import peft
    import transformers
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "bitsandbytes": bitsandbytes.__version__}


def process_start(uptime_file: str = "/proc/uptime") -> float:
    """When this process started (Unix time), so a report can count the interpreter, imports and model
    load that come before run_start. Linux: now less the process's age, /proc/uptime less
    /proc/self/stat's starttime (both since boot, in hundredths of a second; /proc/stat's btime would
    add up to a second of rounding); elsewhere, or where the two disagree (a container's own uptime,
    `uptime_file`), when nli_qlora was imported."""
    now = time.time()
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        ticks = int(fields[19])  # field 22 of the line; fields[0] is field 3 (state)
        with open(uptime_file) as f:
            uptime = float(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return IMPORTED_AT
    # a container's own /proc/uptime could make the age negative: the process cannot have started after the import
    return min(now - (uptime - ticks / os.sysconf("SC_CLK_TCK")), IMPORTED_AT)
