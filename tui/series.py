"""One metric over steps, and how to draw a long one with few points.

A terminal plot is a hundred-odd dots wide, so drawing 100,000 points only costs time. The points
are cut into buckets of equal width and each bucket is drawn as either its lowest and highest
point in step order (``envelope``: spikes survive; used for the raw loss) or its mean (``mean``:
a calm line for per-step noise such as throughput). ``Series`` keeps every point and caches the
reduced buckets, extending them as points arrive; the bucket width doubles (and the cache is
rebuilt) only when the count would pass the limit, so keeping it current costs O(1) per point
however long the run.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right

ENVELOPE, MEAN = "envelope", "mean"


def _extremes(xs, ys, start: int, stop: int, out_x: list, out_y: list) -> None:
    """Append the lowest and highest point of xs/ys[start:stop], in x order."""
    seg = ys[start:stop]
    lo, hi = min(seg), max(seg)
    i_lo, i_hi = start + seg.index(lo), start + seg.index(hi)
    for i in sorted({i_lo, i_hi}):
        out_x.append(xs[i])
        out_y.append(ys[i])


def _mean(xs, ys, start: int, stop: int, out_x: list, out_y: list) -> None:
    """Append one point: the bucket's mean x and mean y."""
    n = stop - start
    out_x.append(sum(xs[start:stop]) / n)
    out_y.append(sum(ys[start:stop]) / n)


REDUCERS = {ENVELOPE: (_extremes, 2), MEAN: (_mean, 1)}  # reducer, points per bucket


def bucket_width(n: int, max_points: int, per_bucket: int) -> int:
    """The smallest power of two that fits n points in max_points."""
    width = 1
    while per_bucket * math.ceil(n / width) > max_points:
        width *= 2
    return width


def reduce_points(xs, ys, max_points: int, mode: str = ENVELOPE) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points standing for xs/ys (all of them when they fit)."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    reducer, per_bucket = REDUCERS[mode]
    width = bucket_width(n, max_points, per_bucket)
    out_x: list[float] = []
    out_y: list[float] = []
    for start in range(0, n, width):
        reducer(xs, ys, start, min(start + width, n), out_x, out_y)
    return out_x, out_y


class Series:
    """Finite (x, y) points in arrival order; ``view()`` gives at most ``max_points`` of them."""

    __slots__ = ("xs", "ys", "max_points", "mode", "_width", "_covered", "_out_x", "_out_y", "_top", "_top_n")

    def __init__(self, max_points: int = 2000, mode: str = ENVELOPE):
        self.xs = array("d")
        self.ys = array("d")
        self.max_points = max_points
        self.mode = mode
        self._clear_cache()

    def _clear_cache(self) -> None:
        self._top: float | None = None  # max of ys[:_top_n]: extended as points arrive
        self._top_n = 0
        self._width = 1
        self._covered = 0  # raw points already reduced into _out_x/_out_y (whole buckets only)
        self._out_x: list[float] = []
        self._out_y: list[float] = []

    def append(self, x: float, y: float | None) -> None:
        """Add a point; a missing or non-finite y (null in the file) is not a point."""
        if y is not None and y - y == 0.0:  # finite: inf - inf and nan - nan are nan
            self.xs.append(x)
            self.ys.append(y)

    def extend(self, xs: list[float], ys: list[float | None]) -> None:
        """``append`` for many points; when all are finite (the usual case), at C speed."""
        total = None if None in ys else sum(ys)
        if total is not None and total - total == 0.0:  # a NaN or inf (or an overflow) makes it non-finite
            self.xs.extend(xs)
            self.ys.extend(ys)
            return
        for x, y in zip(xs, ys):
            self.append(x, y)

    def __len__(self) -> int:
        return len(self.xs)

    @property
    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None

    def top(self) -> float | None:
        """The largest value of every point, not of the view's bucket means (a peak is a peak)."""
        if self._top_n < len(self.ys):
            new = max(self.ys[self._top_n:])
            self._top = new if self._top is None else max(self._top, new)
            self._top_n = len(self.ys)
        return self._top

    def tail(self, n: int) -> list[float]:
        """The last n points themselves, not the view's."""
        return self.ys[-n:].tolist()

    def truncate_after(self, x: float) -> None:
        """Drop the points past x (a resumed run redoes the steps after its checkpoint)."""
        cut = bisect_right(self.xs, x)
        if cut < len(self.xs):
            del self.xs[cut:]
            del self.ys[cut:]
            self._clear_cache()

    def view(self) -> tuple[list[float], list[float]]:
        n = len(self.xs)
        if n <= self.max_points:
            return self.xs.tolist(), self.ys.tolist()
        reducer, per_bucket = REDUCERS[self.mode]
        width = bucket_width(n, self.max_points, per_bucket)
        if width != self._width:
            self._clear_cache()
            self._width = width
        whole = n - n % width
        for start in range(self._covered, whole, width):
            reducer(self.xs, self.ys, start, start + width, self._out_x, self._out_y)
        self._covered = whole
        out_x, out_y = list(self._out_x), list(self._out_y)
        if whole < n:
            reducer(self.xs, self.ys, whole, n, out_x, out_y)
        return out_x, out_y
