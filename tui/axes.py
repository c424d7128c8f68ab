"""Tick positions and labels for small terminal plots.

Plotext's own ticks print learning rates as 0.0000250 and steps as 40.0; these are few, round,
and printed the way the rest of the dashboard prints numbers.
"""

from __future__ import annotations

import math

from tui import fmt


def nice_ticks(lo: float, hi: float, count: int = 4, integer: bool = False) -> list[float]:
    """About ``count`` round values in [lo, hi] (1, 2 or 5 times a power of ten apart), and at
    least two of them: one label alone does not tell the scale. ``integer``: whole numbers only
    (steps, epochs), so no two ticks round to the same label."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    ticks = _ticks(lo, hi, count, integer)
    while len(ticks) < 2 and count < 12:
        count += 1
        ticks = _ticks(lo, hi, count, integer)
    return ticks


def _ticks(lo: float, hi: float, count: int, integer: bool = False) -> list[float]:
    raw = (hi - lo) / max(count - 1, 1)
    if integer:
        raw = max(raw, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    # the round step nearest to the wanted one (in ratio): 0, 200, 400, 600 rather than 0, 500
    step = min((m * power for m in (1, 2, 5, 10) if not integer or m * power >= 1),
               key=lambda s: abs(math.log(s / raw)))
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [float(f"{k * step:.12g}") for k in range(first, last + 1)]


def tick_labels(ticks: list[float], integer: bool = False) -> list[str]:
    """Labels as short as the dashboard's numbers, with more digits where that is what it takes
    to tell neighbouring ticks apart (100k and 100.5k, not 100k twice)."""
    label = (lambda t, d: fmt.count(round(t), d)) if integer else fmt.number
    labels: list[str] = []
    top = max((abs(t) for t in ticks), default=0.0)
    spacing = min((b - a for a, b in zip(ticks, ticks[1:])), default=0.0)
    # the last digit printed is at the spacing's decimal place: 4.9214e+15 next to 4.9216e+15
    needed = math.floor(math.log10(top)) - math.floor(math.log10(spacing)) + 1 if top and spacing > 0 else 3
    for digits in range(min(max(3, needed), 17), 18):  # float holds 17 digits at most
        labels = [label(t, digits) for t in ticks]
        if len(set(labels)) == len(labels):
            break
    return labels


def padded_range(values: list[float], pad: float = 0.05) -> tuple[float, float]:
    """The data range widened a little, so a flat line is not drawn on the frame."""
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi)):  # flat, give or take float rounding of a mean
        margin = abs(lo) * 0.1 or 1.0
        return lo - margin, hi + margin
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


def thin(ticks: list[float], most: int) -> list[float]:
    """Every k-th tick, so that at most ``most`` remain (labels need a row or a few columns each)."""
    if most < 1 or len(ticks) <= most:
        return ticks
    k = math.ceil(len(ticks) / most)
    return ticks[::k]


def log_ticks(lo: float, hi: float, count: int) -> tuple[list[float], list[str]]:
    """Ticks of a log10 axis from exponent lo to hi: (positions as exponents, labels as values).
    Round values (0.2, 0.5, 1, 2) over less than two decades; powers of ten over more."""
    if hi - lo >= 2:
        exponents = nice_ticks(lo, hi, count, integer=True)
        return exponents, tick_labels([10 ** e for e in exponents])
    values = [t for t in nice_ticks(10 ** lo, 10 ** hi, count) if t > 0]
    return [math.log10(t) for t in values], tick_labels(values)
