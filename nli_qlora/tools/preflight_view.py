"""The dry run's view: its report as rich tables on stdout (programs read --dry-run-json instead)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from nli_qlora.tools.memory import TERMS

GB = 10**9


def render(report) -> None:
    """`report`: a tools.preflight.Report."""
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    d = report.data

    def table(title: str, *columns: str, left: tuple[int, ...] = (0,)) -> Table:
        """Text columns (`left`) left-aligned, numbers right-aligned."""
        t = Table(title=title, title_justify="left")
        for i, col in enumerate(columns):
            t.add_column(col, justify="left" if i in left else "right")
        return t

    if "data" in d:
        t = table("Data", "split", "source", "read", "unlabelled", "bad", "too long", "selected", left=(0, 1))
        for split, e in d["data"].items():
            t.add_row(split, str(e.get("file")), *(str(e.get(k, "-")) for k in ("rows_read", "unlabeled_dropped")),
                      str(len(e.get("bad_rows", []))), str(len(e.get("too_long", []))), str(e.get("selected", "-")))
        console.print(t)
    if d.get("token_lengths"):
        t = table("Prompt tokens (selected rows)", "split", "min", "median", "p95", "max")
        for split, st in d["token_lengths"].items():
            if st:
                t.add_row(split, *(str(st[k]) for k in ("min", "median", "p95", "max")))
        console.print(t)
    if "padding" in d:
        p = d["padding"]
        t = table(f"Padding of the training batches (batch {p['batch_size']}, widths padded to a multiple of "
                  f"{p['pad_multiple']}, all epochs)", "bucketing", "padded tokens", "padding", "width p50",
                  "width max", "shapes")
        for key in ("on", "off"):
            r = p[key]
            t.add_row(key + (" (configured)" if p["configured"] == key else ""), f"{r['padded_tokens']:,}",
                      f"{100 * r['padding_fraction']:.1f}%", str(r["width_p50"]), str(r["width_p100"]),
                      str(r["distinct_widths"]))
        console.print(t)
    if "label_token_ids" in d:
        t = table("Label words", "label", "word", "first token id", "token", left=(0, 1))
        for label, e in d["label_token_ids"].items():
            t.add_row(label, repr(e["word"]), str(e["token_id"]), repr(e["token"]))
        console.print(t)
    if "lora_targets" in d:
        lt = d["lora_targets"]
        t = table("LoRA", "", "", left=(0, 1))
        t.add_row("targets matched", " ".join(lt["matched"]) or "-")
        t.add_row("targets matching nothing", " ".join(lt["unmatched"]) or "-")
        t.add_row("model's linear layers", " ".join(lt["model_linears"]))
        if "params" in d:
            pc = d["params"]
            t.add_row("trainable parameters", f"{pc['trainable']:,}")
            t.add_row("total parameters", f"{pc['total']:,} (bitsandbytes' packed count {pc['total_packed']:,})")
        console.print(t)
    if "memory" in d:
        m = d["memory"]
        per = f" per GPU ({m['processes']} processes)" if m.get("processes", 1) > 1 else ""
        t = table(f"Estimated peak GPU memory{per}: micro-batch {m['micro_batch']} x {m['seq_len']} tokens, "
                  f"{m['compute_dtype']}, checkpointing {'on' if m['gradient_checkpointing'] else 'off'}",
                  "term", "GB", "what", left=(0, 2))
        for name, what in TERMS.items():
            value = m["terms"].get(name, 0)
            if value:
                t.add_row(name, f"{value / GB:.3f}", what)
        t.add_row("total", f"{m['total_gb']:.2f}", f"budget {m['budget']}: {'fits' if m['fits'] else 'DOES NOT FIT'}")
        console.print(t)
    if "planned" in d:
        pl = d["planned"]
        t = table("Plan", "", "", left=(0, 1))
        t.add_row("epochs x steps per epoch", f"{pl['epochs']} x {pl['steps_per_epoch']} = {pl['total_steps']} steps")
        t.add_row("training samples", f"{pl['samples']:,}")
        t.add_row("evaluations", f"validation {pl['evaluations']['validation']} x {pl['eval_rows']['validation']} rows, "
                                 f"test {pl['evaluations']['test']} x {pl['eval_rows']['test']} rows")
        console.print(t)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    for warning in report.warnings:
        console.print(f"warning: {warning}", markup=False)
