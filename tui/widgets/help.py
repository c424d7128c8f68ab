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
| `q` / `ctrl+c` | quit (also from this help) |
| `f` | follow on/off: off, plots and tables stay as they are (the header stays live); on, the newest |
| `tab` / `shift+tab` | move between panels; arrows scroll the focused table or log |
| `m` | choose the plotted metrics (loss, validation, lr, grad norm, throughput, step time, memory, padding) |
| `p` | next plot, when not all chosen plots fit |
| `1` `2` `3` | small terminal: plots, tables (compare view: runs side by side), events |
| `escape` | opened on a folder: back to the list of runs |
| `s` | smoothing of the loss: auto, off, 10, 50, 200, 1000 steps |
| `l` | log y axis on/off |
| `+` `-` | zoom the step range in (around the cursor, else the newest) and out |
| `[` `]` | move the zoomed range earlier, later; `0` all steps again |
| `c` | cursor on/off; `,` `.` move it: the line above the plots reads the values there |
| `w` | x axis: step or wall-clock time since the start |
| `space` | compare view: hide or show the run under the table's cursor |
| `e` | export: the plots as drawn to PNG, every step's metrics to CSV (current directory) |
| `?` / `escape` | close this help |

**Plots** (x = optimizer step): training loss (raw and smoothed), validation accuracy, learning
rate, throughput (samples/s left axis, tokens/s right), step time, memory; gradient norm and
padding fraction through `m`. Every plot shows the same step range.

**Evaluations**: every eval (epoch 0 = before training); the best validation balanced accuracy
is starred. The confusion matrix is the eval under the table's cursor.

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
            width: 100;
            max-width: 100%;
            max-height: 100%;
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

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()  # arrows and page keys scroll it on a small terminal
