"""The view controls' arithmetic and the screen layout, on numbers alone (no Textual)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui import transform
from tui.layout import MIN_HEIGHT, MIN_WIDTH, PLOT_MIN_ROWS, layout_for, window
from tui.view_options import DEFAULT_PANELS, ViewOptions


@pytest.mark.parametrize("size", [(140, 45), (80, 24), (60, 15), (120, 40), (200, 60)])
def test_every_usable_size_has_room_for_a_plot(size):
    layout = layout_for(*size, readout=True)
    assert not layout.too_small and layout.plot_slots >= 1
    body = size[1] - 3 - layout.header_rows - 1
    assert body // (layout.plot_slots // layout.plot_columns) >= PLOT_MIN_ROWS


def test_only_a_big_terminal_puts_the_tables_beside_the_plots():
    assert layout_for(140, 45).wide
    assert not layout_for(80, 24).wide and not layout_for(120, 40).wide


@pytest.mark.parametrize("size", [(MIN_WIDTH - 1, 40), (200, MIN_HEIGHT - 1), (40, 10)])
def test_below_the_minimum_it_is_too_small(size):
    assert layout_for(*size).too_small


def test_the_window_of_plots_rotates_with_p():
    chosen = list(DEFAULT_PANELS)
    assert window(chosen, 0, 4, 2) == ["loss", "val", "lr"]  # the loss spans both columns
    assert window(chosen, 1, 2, 1) == ["val", "lr"]
    assert window(chosen, len(chosen), 1, 1) == ["loss"]  # wraps around


def test_smoothing_cycles_through_every_level():
    options = ViewOptions()
    seen = [options.smoothing]
    for _ in range(len(transform.SMOOTHING)):
        options = options.next_smoothing()
        seen.append(options.smoothing)
    assert seen[:-1] == list(transform.SMOOTHING) and seen[-1] == seen[0]


@given(st.floats(-1e6, 1e6), st.integers(1, 50), st.floats(1, 1000))
def test_the_ema_of_a_constant_is_that_constant(value, n, span):
    xs = [float(i) for i in range(n)]
    assert all(math.isclose(v, value, rel_tol=1e-9, abs_tol=1e-9) for v in transform.ema(xs, [value] * n, span))


def test_the_ema_starts_at_the_first_point_and_lags_a_step():
    xs = [float(i) for i in range(100)]
    ys = [0.0] * 50 + [1.0] * 50
    smoothed = transform.ema(xs, ys, 10)
    assert smoothed[0] == 0.0 and 0.0 < smoothed[55] < 1.0 and smoothed[-1] > 0.99


def test_a_downsampled_series_smooths_like_the_full_one():
    xs = [float(i) for i in range(1000)]
    ys = [math.sin(x / 100) for x in xs]
    full = transform.ema(xs, ys, 50)
    thin = transform.ema(xs[::4], ys[::4], 50)
    assert max(abs(a - b) for a, b in zip(full[::4], thin)) < 0.05


def test_clip_keeps_a_neighbour_either_side():
    xs = [float(i) for i in range(10)]
    cx, cy = transform.clip(xs, xs, 3.5, 6.5)
    assert cx == [3.0, 4.0, 5.0, 6.0, 7.0] and cy == cx


@given(st.floats(0, 1e5), st.floats(10, 1e5), st.floats(0.1, 4), st.floats(0, 1))
def test_zoom_stays_inside_the_run(lo, width, factor, where):
    full = (lo, lo + width)
    span = transform.zoom(full, full, factor, lo + where * width)
    if factor >= 1:
        assert span is None
    else:
        assert span is not None and full[0] - 1e-6 <= span[0] < span[1] <= full[1] + 1e-6
        moved = transform.shift(span, full, width)
        assert math.isclose(moved[1], full[1], abs_tol=1e-6) or moved[1] < full[1]


def test_wall_clock_reads_the_time_of_each_step():
    steps, seconds = [1.0, 2.0, 3.0], [10.0, 20.0, 40.0]
    assert transform.to_wall_clock([1.0, 2.5, 3.0], steps, seconds) == [10.0, 30.0, 40.0]
