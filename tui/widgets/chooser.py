"""The m screen: which metrics are plotted (space toggles, enter applies, escape cancels)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import SelectionList, Static

from tui.view_options import PANELS


class MetricChooser(ModalScreen[tuple[str, ...] | None]):
    DEFAULT_CSS = """
    MetricChooser {
        align: center middle;
        background: $background 60%;
        Vertical {
            width: 56;
            height: auto;
            max-height: 100%;
            border: round $accent;
            background: $surface;
            padding: 0 1;
        }
        SelectionList { height: auto; border: none; }
        Static { color: $text-muted; }
    }
    """
    BINDINGS = [Binding("escape", "dismiss_none", "cancel"), Binding("enter", "apply", "apply", priority=True),
                Binding("q", "app.quit", "quit")]

    def __init__(self, chosen: tuple[str, ...]) -> None:
        super().__init__()
        self._chosen = chosen

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("plots to draw: space toggles · enter applies · escape cancels")
            yield SelectionList[str](*((title, name, name in self._chosen) for name, title in PANELS.items()),
                                     id="metrics")

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    def action_apply(self) -> None:
        selected = set(self.query_one(SelectionList).selected)
        self.dismiss(tuple(name for name in PANELS if name in selected))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
