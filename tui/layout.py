"""How the screen is divided at a given terminal size: decided by numbers alone (no Textual), so
every size is a designed layout and tested as such.

- wide (at least 130×30): the plots, with the evaluations, confusion matrix and events beside
  them, as before;
- compact (smaller): one page at a time, the plots (key 1) or the tables and events (key 2), and
  a shorter header;
- too small (under 60×15): one line saying so, instead of panels squeezed to nothing.

Plots get at least PLOT_MIN_ROWS rows each (four rows of dots, the frame and the x axis) and
PLOT_MIN_COLUMNS columns; the chosen plots that do not fit are reached with p (next plot).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_WIDTH, MIN_HEIGHT = 60, 15
WIDE_WIDTH, WIDE_HEIGHT = 130, 30
SIDE_WIDTH = 54  # the evaluation table's columns
PLOT_MIN_ROWS = 8
PLOT_MIN_COLUMNS = 40
CHROME_ROWS = 3  # title bar, progress, footer


@dataclass(frozen=True)
class Layout:
    too_small: bool = False
    wide: bool = True  # tables beside the plots; else one page at a time
    header_rows: int = 5
    plot_columns: int = 2
    plot_slots: int = 6  # plots that fit at once (a plot spanning both columns takes two)
    narrow: bool = False  # under 80 columns: the progress bars drop their percentages


def header_rows(height: int) -> int:
    """The full header (model, data, config) when there is room; the first lines otherwise."""
    return 5 if height >= WIDE_HEIGHT else 3 if height >= 20 else 2


def layout_for(width: int, height: int, readout: bool = False) -> Layout:
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return Layout(too_small=True, wide=False, header_rows=0, plot_columns=1, plot_slots=0)
    wide = width >= WIDE_WIDTH and height >= WIDE_HEIGHT
    rows = header_rows(height)
    body = height - CHROME_ROWS - rows - (1 if readout else 0)
    plots_width = width - SIDE_WIDTH if wide else width
    columns = 2 if plots_width >= 2 * PLOT_MIN_COLUMNS else 1
    plot_rows = max(1, body // PLOT_MIN_ROWS)
    return Layout(wide=wide, header_rows=rows, plot_columns=columns, plot_slots=columns * plot_rows,
                  narrow=width < 80)


def window(chosen: list[str], start: int, slots: int, columns: int, wide_first: str | None = "loss") -> list[str]:
    """The chosen plots shown at once: from ``start`` (p moves it), as many as the slots hold;
    ``wide_first``, when it leads a two-column grid, spans both columns."""
    if not chosen or slots <= 0:
        return []
    start %= len(chosen)
    ordered = chosen[start:] + chosen[:start]
    shown, used = [], 0
    for name in ordered:
        cost = 2 if columns == 2 and not shown and name == wide_first else 1
        if used + cost > slots:
            break
        shown.append(name)
        used += cost
    return shown
