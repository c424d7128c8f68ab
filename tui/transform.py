"""What the view controls do to a series before it is drawn: smoothing, log scale, the step range
(zoom and pan) and the wall-clock x axis. Plain functions on lists, no Textual, so each is tested
on numbers alone; the plots and the PNG export share them.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

# smoothing: an exponential moving average whose span is in steps ("auto": the run's own, see
# state.ema_beta; "off": the raw loss alone)
SMOOTHING = ("auto", "off", 10, 50, 200, 1000)


def ema(xs: list[float], ys: list[float], span: float) -> list[float]:
    """An exponential moving average of span ``span`` x units, weighted by the x gap between
    points, so a downsampled series (one point per many steps) smooths like the full one.
    Debiased (like Adam's moments): the first value is the first point, not a pull toward 0."""
    out: list[float] = []
    if not xs:
        return out
    tau = max(span, 1e-12) / 2.0  # span N ~ alpha 2/(N+1): a time constant of about N/2
    avg = weight = 0.0
    prev = xs[0]
    for x, y in zip(xs, ys):
        keep = math.exp(-max(x - prev, 1.0) / tau) if out else 0.0
        avg = keep * avg + (1 - keep) * y
        weight = keep * weight + (1 - keep)
        out.append(avg / weight)
        prev = x
    return out


def clip(xs: list[float], ys: list[float], lo: float | None, hi: float | None) -> tuple[list[float], list[float]]:
    """The points with lo <= x <= hi (x ascending), plus one neighbour either side so a line
    runs to the frame instead of stopping short of it."""
    if lo is None and hi is None:
        return xs, ys
    start = bisect_left(xs, lo) if lo is not None else 0
    stop = bisect_right(xs, hi) if hi is not None else len(xs)
    start, stop = max(start - 1, 0), min(stop + 1, len(xs))
    return xs[start:stop], ys[start:stop]


def log10_points(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """log10 of y; zero and negative values have no logarithm and are left out."""
    kept = [(x, math.log10(y)) for x, y in zip(xs, ys) if y > 0]
    return [x for x, _ in kept], [y for _, y in kept]


def interpolate(x: float, xs: list[float], ys: list[float]) -> float | None:
    """y at x on the polyline xs/ys (x ascending); the end value past either end."""
    if not xs:
        return None
    i = bisect_left(xs, x)
    if i <= 0:
        return ys[0]
    if i >= len(xs):
        return ys[-1]
    x0, x1 = xs[i - 1], xs[i]
    if x1 == x0:
        return ys[i]
    return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (x1 - x0)


def to_wall_clock(xs: list[float], steps: list[float], seconds: list[float]) -> list[float]:
    """Steps as seconds since the run started, read off the run's (step, elapsed) series."""
    return [interpolate(x, steps, seconds) for x in xs]  # type: ignore[misc]


def nearest(x: float, xs: list[float]) -> int | None:
    """The index of the point nearest to x (xs ascending)."""
    if not xs:
        return None
    i = bisect_left(xs, x)
    if i == 0:
        return 0
    if i == len(xs):
        return len(xs) - 1
    return i if xs[i] - x < x - xs[i - 1] else i - 1


def zoom(span: tuple[float, float], full: tuple[float, float], factor: float,
         center: float | None = None) -> tuple[float, float] | None:
    """The range ``factor`` times as wide around ``center`` (default: the range's right end, where
    a live run grows), kept inside ``full``; None when it covers all of it (no zoom)."""
    lo, hi = span
    f_lo, f_hi = full
    center = hi if center is None else center
    width = (hi - lo) * factor
    if width >= f_hi - f_lo:
        return None
    width = max(width, 2.0)  # a couple of steps at least
    share = (center - lo) / (hi - lo) if hi > lo else 1.0
    new_lo = center - share * width
    return shift((new_lo, new_lo + width), full, 0.0)


def shift(span: tuple[float, float], full: tuple[float, float], by: float) -> tuple[float, float]:
    """The range moved by ``by`` x units, stopped at the ends of ``full``."""
    lo, hi = span
    width = hi - lo
    lo = min(max(lo + by, full[0]), full[1] - width)
    return lo, lo + width
