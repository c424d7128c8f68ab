"""Published peak figures of GPUs, looked up by the name CUDA reports, for utilization and rooflines.

Dense (no sparsity) bf16 tensor-core peaks and memory bandwidths from the vendors' data sheets. An
unknown device gives None, never a guess: a utilization figure against the wrong peak misleads."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Peak:
    name: str
    bf16_flops: float  # dense bf16 tensor-core FLOP/s
    bandwidth: float | None = None  # memory bytes/s, where the data sheet gives one figure


# Most specific first: the first pattern found in the device name wins ("H100 PCIe" before "H100").
PEAKS: tuple[tuple[str, Peak], ...] = (
    (r"H100.*PCIe", Peak("H100 PCIe", 756e12, 2.0e12)),
    (r"H100 NVL", Peak("H100 NVL", 835e12, 3.9e12)),
    (r"H200 NVL", Peak("H200 NVL", 835e12, 4.8e12)),
    (r"GH200|H200", Peak("H200", 989e12, 4.8e12)),
    (r"H100", Peak("H100 SXM (HBM3)", 989e12, 3.35e12)),
    (r"A100", Peak("A100", 312e12)),
    (r"L40S", Peak("L40S", 362e12, 864e9)),
    (r"\bA40\b", Peak("A40", 149.7e12, 696e9)),
    (r"RTX 4090", Peak("RTX 4090", 165e12, 1008e9)),
    (r"\bL4\b", Peak("L4", 121e12, 300e9)),
    (r"\bA10\b", Peak("A10", 125e12, 600e9)),
)

A40 = Peak("A40", 149.7e12, 696e9)  # the card users of this project fine-tune on


def lookup(device_name: str | None) -> Peak | None:
    """The peak of the device CUDA calls `device_name` (torch.cuda.get_device_name), or None."""
    if not device_name:
        return None
    for pattern, peak in PEAKS:
        if re.search(pattern, device_name):
            return peak
    return None


def utilization(flops: float, seconds: float, device_name: str | None) -> float | None:
    """Achieved FLOP/s as a fraction of the device's dense bf16 peak; None for unknown devices."""
    peak = lookup(device_name)
    if peak is None or seconds <= 0:
        return None
    return flops / seconds / peak.bf16_flops


def roofline_seconds(flops: float, bytes_moved: float, peak: Peak = A40) -> float:
    """The shortest time the work can take there: bound by arithmetic or by memory traffic."""
    if peak.bandwidth is None:
        raise ValueError(f"no bandwidth figure for {peak.name}")
    return max(flops / peak.bf16_flops, bytes_moved / peak.bandwidth)
