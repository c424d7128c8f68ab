"""The ? screen: keys, and what each panel shows."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# nli-qlora dashboard

| key | does |
| --- | --- |
| `q` | quit |
| `f` | follow on/off: when off, plots and tables stay as they are (the header stays live) |
| `tab` / `shift+tab` | move between panels; arrows scroll the focused table or log |
| `?` / `escape` | close this help |

**Header**: status (running, stalled when no line came for a while, completed, failed,
interrupted), elapsed time, ETA from the recent step rate and the planned steps, model, device,
data and the settings that matter.

**Plots** (x = optimizer step): training loss (raw and smoothed), learning rate, throughput
(samples/s left axis, tokens/s right), step time, memory (GPU allocated and peak, process RSS).

**Evaluations**: every eval (epoch 0 = before training); the best validation balanced accuracy
is starred. The confusion matrix is the eval under the table's cursor (rows gold, columns
predicted) with each class's recall.

**Events**: start, warnings, checkpoints, resumes, skipped steps, the end or the error, and
lines of the file that could not be read.

The dashboard only reads `metrics.jsonl` (docs/metrics.md); closing it never touches the run.
"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
        background: $background 60%;
        VerticalScroll {
            width: 90;
            max-height: 34;
            height: auto;
            border: round $accent;
            background: $surface;
            padding: 0 1;
        }
    }
    """
    BINDINGS = [Binding("escape,question_mark", "dismiss", "close help"), Binding("q", "app.quit", "quit")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)
