"""Evaluations: a table of every eval, and the confusion matrix of the one under the cursor."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import DataTable, Static

from tui import fmt
from tui.state import Eval

SHORT = {"entailment": "entail", "neutral": "neutral", "contradiction": "contra"}


class EvalTable(DataTable):
    """One row per eval event; the best validation balanced accuracy is starred."""

    DEFAULT_CSS = """
    EvalTable {
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        height: auto;
        max-height: 16;
        overflow-x: hidden;
        &:focus { border: round $accent; }
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.border_title = "evaluations"
        self._shown: tuple[Eval, ...] = ()
        # fixed widths: columns do not jump as rows arrive (and snapshots do not depend on when
        # the table re-measured them); added here, not on mount, as rows may come first
        for label, width in (("epoch", 5), ("split", 10), ("step", 7), ("loss", 5), ("acc", 5),
                             ("bal. acc", 8)):  # the panel's width: a longer step or loss ends in "…"
            self.add_column(Text(label, justify="right" if label != "split" else "left"), key=label, width=width)

    def show(self, evals: tuple[Eval, ...], follow: bool) -> None:
        """Rebuild when the evals changed; keep the cursor, or move it to the newest when following."""
        if evals == self._shown:
            if follow and evals and self.cursor_row != len(evals) - 1:
                self.move_cursor(row=len(evals) - 1, animate=False)  # f: back to the newest
            return
        row = self.cursor_row
        self._shown = evals
        best = max((e for e in evals if e.split == "validation" and e.balanced_accuracy is not None),
                   key=lambda e: e.balanced_accuracy, default=None)
        self.clear()
        for e in evals:
            score = f"{fmt.score(e.balanced_accuracy):>6}"  # padded by hand: right-justifying drops the star's room
            bal = Text(score + "  ")
            if e is best:
                bal = Text.assemble((score, "bold green"), (" ★", "green"))
            cut = dict(justify="right", no_wrap=True, overflow="ellipsis")  # longer still: "…", never cut silently
            self.add_row(Text(str(e.epoch), **cut), e.split, Text(f"{e.step:,}", **cut),
                         Text(fmt.score(e.loss), **cut), Text(fmt.score(e.accuracy), **cut), bal)
        self.border_subtitle = (f"best validation {fmt.score(best.balanced_accuracy)} at epoch {best.epoch}"
                                if best else "")
        if evals:
            self.move_cursor(row=len(evals) - 1 if follow else min(row, len(evals) - 1), animate=False)

    def eval_at_cursor(self) -> Eval | None:
        if not self._shown:
            return None
        return self._shown[min(max(self.cursor_row, 0), len(self._shown) - 1)]


class ConfusionView(Static, can_focus=False):
    """Counts, rows = gold label, columns = predicted; recall per gold label on the right."""

    DEFAULT_CSS = """
    ConfusionView {
        border: round $panel-lighten-2;
        border-title-color: $text;
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.border_title = "confusion matrix"

    def show(self, ev: Eval | None) -> None:
        if ev is None or ev.confusion is None:
            self.border_title = "confusion matrix"
            self.update(Text("no evaluation yet", style="dim"))
            return
        self.border_title = f"confusion · {ev.split} · epoch {ev.epoch}"
        table = Table(box=None, padding=(0, 1), show_edge=False, expand=True)
        table.add_column("gold \\ pred", style="dim", no_wrap=True)
        for label in ev.labels:
            table.add_column(SHORT.get(label, label), justify="right")
        table.add_column("recall", justify="right", style="bold")
        for i, (label, row) in enumerate(zip(ev.labels, ev.confusion)):
            cells = [Text(f"{c:,}", style="bold" if i == j else "") for j, c in enumerate(row)]
            total = sum(row)
            recall = ev.per_class_recall.get(label)
            if recall is None and total:
                recall = row[i] / total
            table.add_row(label, *cells, fmt.score(recall))
        self.update(table)
