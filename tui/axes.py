"""Tick positions and labels for small terminal plots.

Plotext's own ticks print learning rates as 0.0000250 and steps as 40.0; these are few, round,
and printed the way the rest of the dashboard prints numbers.
"""

from __future__ import annotations

import math

from tui import fmt


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About ``count`` round values in [lo, hi] (1, 2 or 5 times a power of ten apart), and at
    least two of them: one label alone does not tell the scale."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    ticks = _ticks(lo, hi, count)
    while len(ticks) < 2 and count < 12:
        count += 1
        ticks = _ticks(lo, hi, count)
    return ticks


def _ticks(lo: float, hi: float, count: int) -> list[float]:
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [float(f"{k * step:.12g}") for k in range(first, last + 1)]


def tick_labels(ticks: list[float], integer: bool = False) -> list[str]:
    if integer:
        return [fmt.count(round(t)) for t in ticks]
    labels = [fmt.number(t, 3) for t in ticks]
    return labels


def padded_range(values: list[float], pad: float = 0.05) -> tuple[float, float]:
    """The data range widened a little, so a flat line is not drawn on the frame."""
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi)):  # flat, give or take float rounding of a mean
        margin = abs(lo) * 0.1 or 1.0
        return lo - margin, hi + margin
    margin = (hi - lo) * pad
    return lo - margin, hi + margin
