"""The run at a glance: status, name, time, model, device, data and the settings that matter."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui import fmt
from tui.state import RunSnapshot

STATUS_STYLE = {
    "running": ("●", "bold green"),
    "stalled": ("◌", "bold yellow"),
    "completed": ("✓", "bold green"),
    "failed": ("✗", "bold red"),
    "interrupted": ("■", "bold yellow"),
    "waiting": ("…", "dim"),
    "not metrics": ("✗", "bold red"),
    "deleted": ("✗", "bold red"),
}


def status_badge(status: str) -> Text:
    mark, style = STATUS_STYLE.get(status, ("?", "bold"))
    return Text(f"{mark} {status}", style=style)


def _model(snap: RunSnapshot) -> str:
    model = snap.info.model
    quantization = model.get("quantization")
    weights = "not quantized" if quantization in (None, "none") else quantization
    if model.get("dequantized"):  # --dequantize-base: the 4-bit values, kept in the compute dtype
        weights += ", kept dequantized"
    parts = [model.get("name"), weights, model.get("dtype")]
    if model.get("lora_compute_dtype", "float32") != "float32":  # --lora-compute-dtype bfloat16
        parts.append(f"adapters {model['lora_compute_dtype']}")
    if model.get("compiled"):  # --compile: the first step's time is mostly compiling
        parts.append("layers compiled")
    return " · ".join(str(p) for p in parts if p)


def _device(snap: RunSnapshot) -> str:
    """× the number of processes that trained (world_size), not the devices the machine has:
    a single-process run on a 2-GPU machine used one."""
    device = snap.info.device
    kind, name = device.get("type"), device.get("name")
    processes = snap.info.world_size or 1
    parts = [str(kind or "?")]
    if name and name != kind:
        parts.append(f"{name} × {processes}" if processes > 1 else str(name))
    elif processes > 1:
        parts.append(f"{processes} processes")
    if device.get("total_memory_gb"):
        parts.append(f"{fmt.number(device['total_memory_gb'])} GB")
    return " · ".join(parts)


def _data(snap: RunSnapshot) -> str:
    splits = []
    for split, d in snap.info.data.items():
        rows = d.get("selected") if isinstance(d, dict) else None
        splits.append(f"{split} {fmt.count(rows)}" if rows is not None else split)
    source = snap.info.config.get("dataset")
    return " · ".join(splits) + (f"  ({source})" if source else "")


def _params(snap: RunSnapshot) -> str:
    p = snap.info.params
    if not p.get("trainable"):
        return "—"
    share = p.get("trainable_percent")
    return (f"{fmt.count(p['trainable'])} trainable of {fmt.count(p.get('total'))}"
            + (f" ({share:.2f}%)" if isinstance(share, (int, float)) else ""))


def _settings(snap: RunSnapshot) -> Text:
    c = snap.info.config
    text = Text()
    if c:
        accum = f" (accum {c['grad_accum']})" if c.get("grad_accum", 1) != 1 else ""
        text.append(f"batch {c.get('batch_size')}{accum} · lr {fmt.number(c.get('learning_rate'))} "
                    f"{c.get('lr_schedule', '')} · max_length {c.get('max_length')} · "
                    f"LoRA r {c.get('lora_r')} α {c.get('lora_alpha')} · loss {c.get('loss')}")
    targets = snap.info.lora_targets
    matched, unmatched = targets.get("matched") or [], targets.get("unmatched") or []
    if matched or unmatched:
        text.append(f" · {len(matched)} target modules")
    if unmatched:
        text.append(f" (unmatched: {' '.join(map(str, unmatched))})", style="yellow")
    return text


class RunHeader(Static):
    """Five lines, always: the layout below does not jump when the run's first line arrives."""

    DEFAULT_CSS = """
    RunHeader {
        height: 5;
        padding: 0 1;
        background: $boost;
    }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._key: tuple | None = None

    def show(self, snap: RunSnapshot | None, now: float, stall_after: float) -> None:
        """Redraw only when something visible changed (this runs every second)."""
        key = self._key_of(snap, now, stall_after)
        if key != self._key:
            self._key = key
            self.update(self.render_snapshot(snap, now, stall_after), layout=False)  # fixed height

    @staticmethod
    def _key_of(snap: RunSnapshot | None, now: float, stall_after: float) -> tuple:
        if snap is None:
            return (None,)
        status = snap.status(now, stall_after)
        seconds = [snap.elapsed(now, stall_after), snap.eta(now, stall_after),
                   snap.idle_for(now) if status == "stalled" else None]
        return (snap.source, snap.generation, snap.exists, snap.not_metrics, snap.lines if snap.info is None else 0, snap.file_error, id(snap.info), status, snap.error,
                snap.resumes, fmt.rate(snap.steps_per_s), *(fmt.duration(s) for s in seconds))

    @staticmethod
    def render_snapshot(snap: RunSnapshot | None, now: float, stall_after: float) -> Group:
        grid = Table.grid(padding=(0, 2), expand=True)
        grid.add_column(ratio=3, no_wrap=True, overflow="ellipsis")  # one line each: a short header keeps its rows
        grid.add_column(ratio=2, no_wrap=True, overflow="ellipsis")
        if snap is not None and snap.not_metrics:
            grid.add_row(status_badge("not metrics"), "")
            return Group(grid, Text(f"{snap.source} is not a metrics file: none of its {snap.lines:,} lines is a "
                                    "metrics record (docs/metrics.md)", style="red"))
        if snap is None or snap.info is None:
            grid.add_row(status_badge("deleted" if snap is not None and snap.deleted else "waiting"), "")
            waiting = ("for the file to appear" if snap is None or not snap.exists
                       else "for the run's first line")
            grid.add_row(Text(f"waiting {waiting}: {snap.source if snap else ''}", style="dim"), "")
            if snap is not None and snap.file_error:
                grid.add_row(Text(snap.file_error, style="red"), "")
            return Group(grid)
        status = snap.status(now, stall_after)
        top = Text.assemble(status_badge(status), "  ", (snap.name, "bold"))
        if snap.resumes:
            top.append(f"  (resumed {snap.resumes}×)", style="yellow")
        timing = Text.assemble(("elapsed ", "dim"), fmt.duration(snap.elapsed(now, stall_after)))
        if status == "running":
            timing.append_text(Text.assemble(("   ETA ", "dim"), fmt.duration(snap.eta(now, stall_after)),
                                             ("   ", ""), (fmt.rate(snap.steps_per_s), "")))
        elif status == "stalled":
            timing.append(f"   no line for {fmt.duration(snap.idle_for(now))}", style="yellow")
        grid.add_row(top, timing)
        grid.add_row(Text.assemble(("model   ", "dim"), _model(snap)),
                     Text.assemble(("device  ", "dim"), _device(snap)))
        grid.add_row(Text.assemble(("data    ", "dim"), _data(snap)),
                     Text.assemble(("params  ", "dim"), _params(snap)))
        rows: list = [grid]
        settings = _settings(snap)
        if settings:
            line = Text.assemble(("config  ", "dim"), settings)
            line.no_wrap, line.overflow = True, "ellipsis"
            rows.append(line)
        if snap.deleted:
            rows.append(Text(f"the file was deleted: {snap.source} (showing what was read)", style="bold red",
                             no_wrap=True, overflow="ellipsis"))
        if snap.error and status == "failed":  # one line here; the event log has all of it
            rows.append(Text(f"error   {snap.error}", style="bold red", no_wrap=True, overflow="ellipsis"))
        return Group(*rows)
