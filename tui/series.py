"""One metric over steps, and how to draw a long one with few points.

A terminal plot is a hundred-odd dots wide, so drawing 100,000 points only costs time. We keep
every point and, for drawing, an envelope: the points are cut into buckets of equal width and
each bucket contributes its lowest and highest point, in step order, so spikes survive while the
count stays bounded. The envelope of the finished buckets is cached and extended as points
arrive; the bucket width doubles (and the cache is rebuilt) only when the count would pass the
limit, so keeping it current costs O(1) per point however long the run.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right


def _extremes(xs, ys, start: int, stop: int, out_x: list, out_y: list) -> None:
    """Append the lowest and highest point of xs/ys[start:stop], in x order."""
    seg = ys[start:stop]
    lo, hi = min(seg), max(seg)
    i_lo, i_hi = start + seg.index(lo), start + seg.index(hi)
    for i in sorted({i_lo, i_hi}):
        out_x.append(xs[i])
        out_y.append(ys[i])


def envelope(xs, ys, max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points of xs/ys that keep each bucket's lowest and highest point."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    width = _bucket_width(n, max_points)
    out_x: list[float] = []
    out_y: list[float] = []
    for start in range(0, n, width):
        _extremes(xs, ys, start, min(start + width, n), out_x, out_y)
    return out_x, out_y


def _bucket_width(n: int, max_points: int) -> int:
    """The smallest power of two that fits n points in max_points (two per bucket)."""
    width = 1
    while 2 * math.ceil(n / width) > max_points:
        width *= 2
    return width


class Series:
    """Finite (x, y) points in arrival order; ``view()`` gives at most ``max_points`` of them."""

    __slots__ = ("xs", "ys", "max_points", "_width", "_covered", "_env_x", "_env_y")

    def __init__(self, max_points: int = 2000):
        self.xs = array("d")
        self.ys = array("d")
        self.max_points = max_points
        self._clear_envelope()

    def _clear_envelope(self) -> None:
        self._width = 1
        self._covered = 0  # raw points summarized in _env_x/_env_y (whole buckets only)
        self._env_x: list[float] = []
        self._env_y: list[float] = []

    def append(self, x: float, y) -> None:
        """Add a point; a missing or non-finite y (null in the file) is not a point."""
        if y is None or y is True or y is False:
            return
        y = float(y)
        if math.isfinite(y):
            self.xs.append(x)
            self.ys.append(y)

    def __len__(self) -> int:
        return len(self.xs)

    @property
    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None

    def truncate_after(self, x: float) -> None:
        """Drop the points past x (a resumed run redoes the steps after its checkpoint)."""
        cut = bisect_right(self.xs, x)
        if cut < len(self.xs):
            del self.xs[cut:]
            del self.ys[cut:]
            self._clear_envelope()

    def view(self) -> tuple[list[float], list[float]]:
        n = len(self.xs)
        if n <= self.max_points:
            return self.xs.tolist(), self.ys.tolist()
        width = _bucket_width(n, self.max_points)
        if width != self._width:
            self._clear_envelope()
            self._width = width
        whole = n - n % width
        for start in range(self._covered, whole, width):
            _extremes(self.xs, self.ys, start, start + width, self._env_x, self._env_y)
        self._covered = whole
        out_x, out_y = list(self._env_x), list(self._env_y)
        if whole < n:
            _extremes(self.xs, self.ys, whole, n, out_x, out_y)
        return out_x, out_y
