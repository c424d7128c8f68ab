"""Every number formatter, and the axis labels, read back as the number they stand for.

Property tests (hypothesis) over all magnitudes: the printed text, parsed back (commas, k/M/B/T
suffixes, exponents), must be within the rounding of the true value."""

import math

from hypothesis import example, given
from hypothesis import strategies as st

from tui import axes, fmt

SUFFIX = {"k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}

finite = st.floats(min_value=-1e18, max_value=1e18, allow_nan=False, allow_infinity=False)
magnitudes = st.builds(lambda m, e, sign: sign * m * 10.0 ** e, st.floats(1.0, 9.999), st.integers(-12, 15),
                       st.sampled_from([1, -1]))
values = finite | magnitudes


def parse(text: str) -> float:
    """The number a formatted string stands for."""
    text = text.replace(",", "")
    scale = SUFFIX.get(text[-1], 1.0)
    if scale != 1.0:
        text = text[:-1]
    return float(text) * scale


def within_rounding(printed: float, true: float, digits: int, absolute: float = 0.0) -> bool:
    """|printed - true| is at most half a unit in the last of ``digits`` significant digits
    (or ``absolute``, for text printed as a whole number)."""
    return abs(printed - true) <= max(5 * 10.0 ** -digits * abs(true), absolute) * (1 + 1e-9) + 1e-300


@given(values)
@example(13336.6)
@example(999_960.0)
@example(10_000.0)
@example(99.96)
@example(1e-3)
def test_number_reads_back_as_the_value(value):
    text = fmt.number(value)
    assert within_rounding(parse(text), value, 3, absolute=0.5), text


@given(values, st.integers(3, 8))
def test_number_with_more_digits_reads_back(value, digits):
    text = fmt.number(value, digits)
    assert within_rounding(parse(text), value, digits, absolute=0.5), text


@given(values)
@example(20_000)
@example(2.8e9)
@example(999_999)
def test_count_reads_back_as_the_value(value):
    text = fmt.count(value)
    assert "e" not in text or abs(value) >= 999.5e12, text  # past 999T: an exponent
    assert within_rounding(parse(text), value, 3, absolute=0.5), text


def test_the_examples_of_the_issue():
    assert fmt.number(13336.6) == "13.3k"
    assert fmt.count(20_000) == "20k"
    assert fmt.count(2.8e9) == "2.8B"
    assert fmt.count(999_999) == "1M"


@given(st.floats(0, 1e6, allow_nan=False))
def test_score_and_percent_read_back(value):
    assert abs(float(fmt.score(value)) - value) <= 0.0005 + 1e-9 * value
    assert abs(float(fmt.percent(value / 1e6)[:-1]) - 100 * value / 1e6) <= 0.05 + 1e-9


@given(st.floats(0, 1e7, allow_nan=False))
def test_duration_reads_back(seconds):
    parts = [int(p) for p in fmt.duration(seconds).split(":")]
    total = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    assert abs(total - seconds) <= 0.5 + 1e-9


@given(st.floats(1e-6, 1e6))
def test_rate_reads_back(steps_per_s):
    text = fmt.rate(steps_per_s)
    value = float(text.split()[0])
    shown = value if text.endswith("steps/s") else 1 / value
    assert abs(shown - steps_per_s) <= 0.0051 * steps_per_s


def test_unknowns_are_a_dash():
    for f in (fmt.number, fmt.count, fmt.score, fmt.percent, fmt.duration):
        assert f(None) == "—" and f(math.nan) == "—"


# --- axis ticks -------------------------------------------------------------------------------

ranges = st.tuples(values, st.floats(1e-9, 1e15)).map(lambda t: (t[0], t[0] + abs(t[0]) * 1e-4 + t[1]))


@given(ranges, st.integers(2, 10))
def test_tick_labels_are_distinct_and_read_back(lo_hi, count):
    lo, hi = lo_hi
    ticks = axes.nice_ticks(lo, hi, count)
    slack = 1e-8 * (hi - lo)  # a tick a hair outside the range is on its edge
    assert len(ticks) >= 2 and all(lo - slack <= t <= hi + slack for t in ticks)
    labels = axes.tick_labels(ticks)
    assert len(set(labels)) == len(labels), labels
    spacing = ticks[1] - ticks[0]
    for tick, label in zip(ticks, labels):
        assert abs(parse(label) - tick) < spacing / 2, (ticks, labels)
    read = [parse(label) for label in labels]
    assert read == sorted(read)


@given(st.integers(0, 10 ** 9), st.integers(1, 10 ** 9), st.integers(2, 10))
@example(0, 100_000, 8)
@example(0, 3, 6)
def test_integer_tick_labels_are_distinct_whole_numbers(lo, span, count):
    ticks = axes.nice_ticks(lo, lo + span, count, integer=True)
    assert all(t == int(t) for t in ticks)
    labels = axes.tick_labels(ticks, integer=True)
    assert len(set(labels)) == len(labels), labels
    spacing = ticks[1] - ticks[0] if len(ticks) > 1 else 1
    for tick, label in zip(ticks, labels):
        assert abs(parse(label) - tick) < spacing / 2, (ticks, labels)


def test_a_step_axis_to_100k_says_so():
    ticks = axes.nice_ticks(0, 100_000, 8, integer=True)
    assert axes.tick_labels(ticks, integer=True)[-1] == "100k"


@given(st.floats(-12, 12), st.floats(0.01, 20), st.integers(2, 8))
def test_log_ticks_label_the_values_at_their_positions(lo, span, count):
    positions, labels = axes.log_ticks(lo, lo + span, count)
    assert len(positions) == len(labels) and len(set(labels)) == len(labels)
    for position, label in zip(positions, labels):
        assert within_rounding(parse(label), 10 ** position, 3, absolute=0.5 if 10 ** position >= 1e4 else 0), label
