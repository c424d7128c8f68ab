"""Numbers and durations as the dashboard prints them: short, and the same everywhere."""

from __future__ import annotations

import math


def duration(seconds: float | None) -> str:
    """1:02:03 for an hour and more, 2:03 below; an em dash when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    total = int(round(max(seconds, 0.0)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def number(value: float | None, digits: int = 3) -> str:
    """A float in about ``digits`` significant digits: 0.412, 2.5e-05, 8.24k, 1.2M."""
    if value is None or not math.isfinite(value):
        return "—"
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 10_000:
        return count(value, digits)
    if magnitude >= 10 ** digits:
        return f"{value:,.0f}"
    if magnitude < 1e-3:
        mantissa, exponent = f"{value:.{max(digits - 1, 1)}e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    text = f"{value:.{digits}g}"
    return f"{value:,.0f}" if "e" in text else text  # 1234 at 3 digits is 1.23e+03: print it whole


def score(value: float | None) -> str:
    """A loss, accuracy or recall in a table: three decimals, so columns line up."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3f}"


SUFFIXES = ((1e3, "k"), (1e6, "M"), (1e9, "B"), (1e12, "T"))  # B: billions, as parameter counts are written


def count(value: float | None, digits: int = 3) -> str:
    """An amount: 9,999 in full, then ``digits`` significant digits and k/M/B/T (13.3k, 2.8B).

    The suffix is picked after rounding, so 999,960 is 1M, not 1e+03k."""
    if value is None or not math.isfinite(value):
        return "—"
    magnitude = abs(value)
    if magnitude < 10_000:
        return f"{value:,.0f}"
    for limit, suffix in SUFFIXES:
        scaled = f"{value / limit:.{digits}g}"
        if "e" not in scaled and abs(float(scaled)) < 1000:
            return scaled + suffix
    return f"{value:.{digits}g}"


def percent(fraction: float | None, digits: int = 1) -> str:
    if fraction is None or not math.isfinite(fraction):
        return "—"
    return f"{100 * fraction:.{digits}f}%"


def rate(steps_per_s: float | None) -> str:
    """Steps per second, or seconds per step when slower than one a second."""
    if not steps_per_s or not math.isfinite(steps_per_s):
        return "—"
    if steps_per_s >= 1:
        return f"{steps_per_s:.3g} steps/s"
    return f"{1 / steps_per_s:.3g} s/step"
