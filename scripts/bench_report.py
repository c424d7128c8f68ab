"""Turn a pytest-benchmark JSON of kernels_bench into a readable table and plots.

    python -m pytest -c kernels_bench/pytest.ini kernels_bench --benchmark-json=bench.json
    python scripts/bench_report.py bench.json                      # bench.md, bench-step_time.png, ...
    python scripts/bench_report.py bench.json --into docs/benchmarks.md --marker gpu-results
    python scripts/bench_report.py part1.json part2.json           # a grid run in parts, one machine

Writes a markdown report (device, date, versions; per step case: median ms, samples/s, real
tokens/s, padding %, peak GB, utilization %, the A40 estimate, and the peer's throughput beside it;
the kernels; the cases that did not fit) and PNG plots of step time and peak memory against batch
size, one line per setting. With --into, the markdown replaces the text between
`<!-- begin MARKER -->` and `<!-- end MARKER -->` in that file. Figures come from each case's
extra_info (see docs/benchmarks.md for what they mean)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

PROG = "scripts/bench_report.py"


def _num(value, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.3g}"


def short_model(name: str) -> str:
    return {"random:phi-2": "Phi-2 (random weights)", "SmolLM2-135M-Instruct.Q4_1.gguf": "SmolLM2-135M",
            "builtin:tiny-phi": "tiny-phi"}.get(name, name)


def setting(info: dict) -> str:
    """A step case's setting without its batch size: what one plotted line holds fixed."""
    if info["kind"] == "peer":
        return "peer (transformers.Trainer)"
    seq = "SNLI lengths" if info["seq"] == "snli" else f"{info['seq']} tokens"
    parts = [seq, info.get("step_mode", "fast")]
    parts.append("checkpointing" if info["checkpointing"] else "no checkpointing")
    if info["seq"] == "snli":
        parts.append("bucketing" if info["bucketing"] else "no bucketing")
    if info.get("dequantize_base"):
        parts.append("base dequantized")
    if info.get("lora_compute_dtype", "float32") != "float32":
        parts.append(f"adapters compute in {info['lora_compute_dtype']}")
    if info.get("fused_lora"):
        parts.append("fused LoRA update")
    if info.get("fused_projections"):
        parts.append("fused projections")
    if info.get("fused_norm"):
        parts.append("fused RMSNorm")
    if info.get("fused_rope"):
        parts.append("fused rotary embedding")
    if info.get("attention_kernel") == "auto":  # absent before the field existed: those runs took torch's pick
        parts.append("torch's attention kernel")
    return ", ".join(parts)


def load(paths: list[Path]) -> dict:
    """One result set from one or more JSONs of the same machine (a grid run in parts): the first
    file's machine and date, every file's cases and out-of-memory records."""
    merged = None
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise SystemExit(f"{PROG}: error: cannot read {path}: {err}")
        if "benchmarks" not in data:
            raise SystemExit(f"{PROG}: error: {path} is not a pytest-benchmark JSON (no 'benchmarks')")
        if merged is None:
            merged = {**data, "benchmarks": [], "nli_qlora_oom": []}
        else:
            device = data.get("machine_info", {}).get("nli_qlora", {}).get("device")
            if device != merged.get("machine_info", {}).get("nli_qlora", {}).get("device"):
                raise SystemExit(f"{PROG}: error: {path} was measured on {device!r}, not on the first file's device")
        merged["benchmarks"] += data["benchmarks"]
        merged["nli_qlora_oom"] += data.get("nli_qlora_oom") or []
    return merged


def header(data: dict, source: str) -> list[str]:
    mi = data.get("machine_info", {})
    ours = mi.get("nli_qlora", {})
    versions = ours.get("versions", {})
    device = ours.get("device") or mi.get("cpu", {}).get("brand_raw", "unknown")
    lines = [f"Device: **{device}**" + (f" (compute capability {ours['capability']}, "
                                         f"{ours['total_memory_gb']} GB)" if ours.get("capability") else ""),
             f"Date: {data.get('datetime', '?')[:19].replace('T', ' ')} UTC; sizes: `{ours.get('bench_size', '?')}`; "
             f"commit: `{(ours.get('git_commit') or data.get('commit_info', {}).get('id') or '?')[:12]}`",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) if versions else "Versions: ?",
             f"Source: `{source}`"]
    if device == "cpu":
        lines.insert(0, "**CPU smoke run: shapes shrunk so the suites stay alive in CI. Not a performance "
                        "claim; the figures only show that every column is produced.**")
    return [f"- {line}" if not line.startswith("**") else line for line in lines]


def step_table(benches: list[dict]) -> list[str]:
    rows = [b for b in benches if b["extra_info"].get("kind") in ("step", "peer")]
    if not rows:
        return []
    peer = {b["extra_info"]["model"]: b["extra_info"] for b in rows if b["extra_info"]["kind"] == "peer"}
    out = ["## Training step", "",
           "| model | setting | batch | median ms | samples/s | real tokens/s | padding % | peak GB | "
           "utilization % | A40 estimate ms | x peer samples/s |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    order = sorted(rows, key=lambda b: (b["extra_info"]["model"], b["extra_info"]["kind"] == "peer",
                                        setting(b["extra_info"]), b["extra_info"]["batch"]))
    for b in order:
        e = b["extra_info"]
        base = peer.get(e["model"])
        ratio = (e["samples_per_s"] / base["samples_per_s"]) if base and e["kind"] != "peer" else None
        a40 = "-" if e.get("a40_estimate_ms") is None else f"{_ms(e['a40_estimate_ms'])} ({e.get('a40_bound', '?')})"
        out.append(f"| {short_model(e['model'])} | {setting(e)} | {e['batch']} | {_num(e['median_step_ms'], '.1f')} | "
                   f"{_num(e['samples_per_s'], '.1f')} | {_num(e['real_tokens_per_s'], ',.0f')} | "
                   f"{_num(e['padding_fraction'], '.1f', 100)} | {_num(e.get('peak_gpu_gb'), '.2f')} | "
                   f"{_num(e.get('flops_utilization'), '.1f', 100)} | {a40} | "
                   f"{'peer' if e['kind'] == 'peer' else _num(ratio, '.2f')} |")
    if not peer:
        out += ["", "No peer case in this file: the `x peer` column is empty."]
    return out + [""]


def kernel_table(benches: list[dict]) -> list[str]:
    rows = [b for b in benches if b["extra_info"].get("kind") in ("linear", "lora_linear", "head", "optimizer")]
    if not rows:
        return []
    out = ["## Kernels", "", "| case | what | per op ms | TFLOP/s | peak GB |", "| --- | --- | ---: | ---: | ---: |"]
    for b in sorted(rows, key=lambda b: b["name"]):
        e = b["extra_info"]
        what = {"linear": lambda: f"{e['impl']} {e['direction']}, {e['tokens']} tokens x {e['in_features']}->"
                                  f"{e['out_features']}",
                "lora_linear": lambda: f"NF4 + LoRA r={e['rank']} forward+backward, {e['tokens']} tokens x "
                                       f"{e['in_features']}->{e['out_features']}",
                "head": lambda: ("3 label logits at the answer" if e["loss"] == "label" else
                                 "full vocabulary, every position")
                                + f" ({e['rows']}x{e['width']}, vocabulary {e['vocab']:,})",
                "optimizer": lambda: f"{e['optimizer']}{' (fused)' if e.get('fused') else ''}"
                                     f"{' by ' + e['update'] if e.get('update') else ''}, {e['params']:,} "
                                     f"parameters in {e['tensors']} tensors"}[e["kind"]]()
        out.append(f"| {b['name']} | {what} | {_num(e['op_ms'], '.3f')} | {_num(e.get('tflops_per_s'), '.1f')} | "
                   f"{_num(e.get('peak_gpu_gb'), '.2f')} |")
    return out + [""]


def other_table(benches: list[dict]) -> list[str]:
    """Cases of other suites (no kind of ours): their pytest-benchmark median."""
    rows = [b for b in benches if b["extra_info"].get("kind") not in ("step", "peer", "linear", "lora_linear", "head",
                                                                     "optimizer")]
    if not rows:
        return []
    out = ["## Other suites", "", "| case | median ms | rounds |", "| --- | ---: | ---: |"]
    out += [f"| {b['name']} | {1e3 * b['stats']['median']:.2f} | {b['stats']['rounds']} |"
            for b in sorted(rows, key=lambda b: b["name"]) if b.get("stats")]
    return out + [""]


def render(data: dict, source: str, images: list[str], level: int = 2) -> str:
    """The report; `level` is its sections' heading level (3 when it goes under a heading of a doc)."""
    benches = data["benchmarks"]
    lines = header(data, source) + [""]
    lines += step_table(benches) + kernel_table(benches) + other_table(benches)
    oom = data.get("nli_qlora_oom") or []
    if oom:
        lines += ["## Did not fit", ""] + [f"- {o['name']} (peak before failing: {o.get('peak_gb')} GB)" for o in oom]
        lines.append("")
    for image in images:
        lines += [f"![{Path(image).stem}]({image})", ""]
    return "\n".join("#" * (level - 2) + line if line.startswith("## ") else line for line in lines)


def plot(data: dict, out_prefix: Path) -> list[Path]:
    """step time and peak memory against batch size, one line per (model, setting); one panel per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("kind") in ("step", "peer")]
    models = sorted({e["model"] for e in steps})
    written = []
    for metric, label, name in (("median_step_ms", "median step time (ms)", "step_time"),
                                ("peak_gpu_gb", "peak GPU memory (GB)", "peak_memory")):
        if not any(e.get(metric) is not None for e in steps):
            continue  # e.g. peak memory on a CPU run
        fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
        for ax, model in zip(axes[0], models):
            lines: dict[str, list[tuple[int, float]]] = {}
            for e in steps:
                if e["model"] == model and e.get(metric) is not None:
                    lines.setdefault(setting(e), []).append((e["batch"], e[metric]))
            for key, points in sorted(lines.items()):
                points.sort()
                peer = key.startswith("peer")
                style = dict(marker="*", markersize=12, linestyle="none") if peer else dict(marker="o")
                ax.plot([p[0] for p in points], [p[1] for p in points], label=key, **style)
            ax.set_xscale("log", base=2)
            batches = sorted({p[0] for points in lines.values() for p in points})
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.minorticks_off()
            ax.set_xlabel("batch size")
            ax.set_ylabel(label)
            ax.set_title(short_model(model))
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_prefix.with_name(f"{out_prefix.name}-{name}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def replace_section(path: Path, marker: str, text: str) -> None:
    doc = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"(<!-- begin {re.escape(marker)} -->\n).*?(<!-- end {re.escape(marker)} -->)", re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{PROG}: error: --into {path}: no '<!-- begin {marker} -->' ... '<!-- end {marker} -->'")
    path.write_text(pattern.sub(lambda m: m.group(1) + text.rstrip("\n") + "\n" + m.group(2), doc), encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Markdown table and PNG plots from a kernels_bench JSON.")
    parser.add_argument("json", type=Path, nargs="+", help="pytest-benchmark --benchmark-json output(s) of one machine")
    parser.add_argument("--out", type=Path, help="markdown file to write (default: beside the JSON, .md)")
    parser.add_argument("--into", type=Path, help="also put the table into this markdown file, between markers")
    parser.add_argument("--marker", default="gpu-results", help="section marker name for --into")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    data = load(args.json)
    source = ", ".join(p.name for p in args.json)
    out = args.out or args.json[0].with_suffix(".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    images = [] if args.no_plots else plot(data, out.with_suffix(""))
    out.write_text(render(data, source, [p.name for p in images]), encoding="utf-8")
    if args.into:
        home = args.into.resolve().parent  # images are linked only where the doc can reach them (--out beside it)
        rel = [str(p.resolve().relative_to(home)) for p in images if p.resolve().is_relative_to(home)]
        replace_section(args.into, args.marker, render(data, source, rel, level=3))
    for path in [out, *images]:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
