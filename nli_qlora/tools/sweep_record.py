"""What a sweep knows: each variant's outcome read from its run directory, sweep.json (the
sweep's state, rewritten after every run, so a rerun resumes) and sweep.md (the table to read).

The score is the validation balanced accuracy after the last epoch: the model the run saves and
a user would keep. Ties go to the variant listed first, the incumbent before the challengers."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nli_qlora.infra.atomic import write_text
from nli_qlora.run.metrics import last_end

VERSION = 2  # 2: a variant is one run per seed


@dataclass
class Outcome:
    status: str                      # completed, failed, interrupted, pending
    score: float | None = None       # validation balanced accuracy after the last epoch
    by_epoch: list = field(default_factory=list)
    validation_rows: int | None = None
    test: dict | None = None         # final runs only: test balanced accuracy before and after
    train_steps_s: float | None = None
    wall_s: float | None = None
    exit_code: int | None = None
    error: str | None = None


def read_outcome(run_dir: Path, exit_code: int | None, log: Path | None) -> Outcome:
    """The outcome from the run directory's own records (summary.json when the run completed)."""
    summary_path = run_dir / "summary.json"
    end = last_end(run_dir)
    status = end.get("status", "interrupted") if end else None
    if status == "completed" and exit_code not in (None, 0):  # e.g. a second process refused to start in its folder
        return Outcome("failed", exit_code=exit_code, error=_last_line(log) or f"exit status {exit_code}")
    if status == "completed" and summary_path.is_file():
        s = json.loads(summary_path.read_text())
        val = [v for v in s["validation"] if v["epoch"] > 0]
        last = val[-1] if val else None
        if last is None:  # nothing to choose by: never a silent gap in the table
            return Outcome("failed", exit_code=exit_code, error="completed without a validation evaluation after training")
        test = None
        if s.get("after"):
            test = {"before": (s.get("before") or {}).get("balanced_accuracy"),
                    "after": s["after"]["balanced_accuracy"], "rows": s["after"]["rows"]}
        return Outcome("completed", last["balanced_accuracy"] if last else None,
                       [round(v["balanced_accuracy"], 4) for v in val], last["rows"] if last else None, test,
                       s["time"]["train_steps_s"], s["time"]["process_wall_s"] or s["time"]["wall_s"], exit_code)
    if exit_code == 130 or status == "interrupted":
        return Outcome("interrupted", exit_code=exit_code)
    return Outcome("failed", exit_code=exit_code, error=_last_line(log) or (status and f"run ended {status}"))


def _last_line(log: Path | None) -> str | None:
    if log is None or not log.is_file():
        return None
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else None


def combine(outcomes: list[dict]) -> dict:
    """A variant's outcome from its runs (one per seed): the mean score once every run completed."""
    if len(outcomes) == 1:
        return outcomes[0]
    statuses = [o["status"] for o in outcomes]
    status = next((s for s in ("failed", "interrupted", "pending") if s in statuses), "completed")
    scores = [o["score"] for o in outcomes]
    done = status == "completed" and all(x is not None for x in scores)
    epochs = min(len(o["by_epoch"]) for o in outcomes)
    return {**asdict(Outcome(status)),
            "score": statistics.fmean(scores) if done else None,
            "by_epoch": [round(statistics.fmean(o["by_epoch"][i] for o in outcomes), 4) for i in range(epochs)],
            "validation_rows": next((o["validation_rows"] for o in outcomes if o["validation_rows"]), None),
            "train_steps_s": sum(o["train_steps_s"] or 0 for o in outcomes) if done else None,
            "wall_s": sum(o["wall_s"] or 0 for o in outcomes),
            "error": next((o["error"] for o in outcomes if o.get("error")), None),
            "scores": scores}


def best(rows: list[dict]) -> dict | None:
    """The first row with the highest score (rows in listing order: incumbent first)."""
    scored = [r for r in rows if r["outcome"]["score"] is not None and not math.isnan(r["outcome"]["score"])]
    return max(scored, key=lambda r: r["outcome"]["score"]) if scored else None  # max keeps the first of ties


def spread(values: list[float]) -> dict:
    return {"n": len(values), "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def save_state(path: Path, state: dict) -> None:
    write_text(path, json.dumps({"version": VERSION, **state}, indent=2, allow_nan=False) + "\n")


def load_state(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except ValueError:
        return None  # a half-written file cannot happen (atomic writes); anything else is rebuilt
    return state if isinstance(state, dict) and state.get("version") == VERSION else None


def outcome_dict(outcome: Outcome) -> dict:
    return asdict(outcome)


# --- sweep.md ------------------------------------------------------------------------------------

def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def _cell(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    text = text.replace("|", "\\|").replace("\n", "\\n")
    return text if len(text) <= 60 else text[:57] + "..."


def _by_seed(o: dict) -> str:
    return " ".join("-" if x is None else f"{100 * x:.1f}" for x in o.get("scores") or [o["score"]]) + " | "


def render(state: dict) -> str:
    v = state["variants"]
    by_name = {r["name"]: r for r in v}
    chosen = state.get("chosen")
    seeds = state.get("seeds") or []
    lines = [f"# Sweep {state['name']}", "",
             f"Spec `{state['spec']}`, preset `{state['preset']}`. Each variant is scored by its balanced accuracy on "
             f"{state.get('validation_rows') or '?'} validation rows after its last epoch"
             + (f", the mean over seeds {', '.join(map(str, seeds))}" if seeds else "") + "; test rows are not read "
             "while choosing. Stages run in order, each on top of the best so far (which competes in every stage).", ""]
    if chosen:
        c = by_name[chosen]
        lines += [f"**Chosen: `{chosen}`**, validation {_pct(c['outcome']['score'])}. Its settings over the preset:", ""]
        lines += [f"- `{k}`: {_cell(val)}" for k, val in state["chosen_overrides"].items()] or ["- (none: the preset)"]
        lines += ["", f"Train it: `python -m nli_qlora.train --config {state['chosen_config']}`", ""]
    stages = [{"name": "base", "variants": ["base"], "incumbent": None, "best": "base"}, *state["stages"]]
    grid_keys = {s["name"]: list(s.get("keys", [])) for s in state["stages"]}
    for stage in stages:
        rows = [by_name[n] for n in stage["variants"] if n in by_name]
        if not rows:
            continue
        keys = grid_keys.get(stage["name"]) or sorted({k for r in rows if r["stage"] == stage["name"] for k in r["choice"]})
        lines += [f"## {stage['name']}", "", "| | variant | " + "".join(f"{k} | " for k in keys)
                  + "validation | " + ("by seed | " if seeds else "") + "by epoch | train s | status |",
                  "| --- | --- | " + "".join("--- | " for _ in keys) + "---: | " + ("--- | " if seeds else "")
                  + "--- | ---: | --- |"]
        for r in sorted(rows, key=lambda r: -(r["outcome"]["score"] if r["outcome"]["score"] is not None else -1)):
            o = r["outcome"]
            mark = ("**chosen**" if r["name"] == chosen else "best of stage" if r["name"] == stage["best"]
                    else "incumbent" if r["name"] == stage["incumbent"] else "")
            cells = [_cell(r["choice"].get(k, "")) if r["stage"] == stage["name"] else "(so far)" for k in keys]
            epochs = " ".join(f"{100 * x:.1f}" for x in o["by_epoch"])
            status = o["status"] + (f": {_cell(o['error'])}" if o.get("error") else "")
            status += f" (same run as `{r['same_as']}`)" if r.get("same_as") else ""
            train_s = "-" if o["train_steps_s"] is None else f"{o['train_steps_s']:.1f}"
            lines.append(f"| {mark} | `{r['name']}` | " + "".join(f"{c} | " for c in cells)
                         + f"{_pct(o['score'])} | " + (_by_seed(o) if seeds else "") + f"{epochs} | {train_s} | {status} |")
        lines.append("")
    final = state.get("final")
    if final:
        lines += ["## Final: the chosen settings on the test split", "",
                  f"Seed{'s' if len(final['seeds']) != 1 else ''} {', '.join(str(s) for s in final['seeds'])}; test rows are read here only.", "",
                  "| seed | run | test before | test after | validation |", "| ---: | --- | ---: | ---: | ---: |"]
        for r in final["runs"]:
            t = r["outcome"].get("test") or {}
            lines.append(f"| {r['seed']} | `{r['run_dir']}` | {_pct(t.get('before'))} | {_pct(t.get('after'))} | "
                         f"{_pct(r['outcome']['score'])} |")
        if final.get("test_after"):
            s = final["test_after"]
            lines += ["", f"Test balanced accuracy after training: mean **{_pct(s['mean'])}**, standard deviation "
                          f"{100 * s['std']:.1f} points, min {_pct(s['min'])}, max {_pct(s['max'])} ({s['n']} seed{'s' if s['n'] != 1 else ''})."]
        lines.append("")
    return "\n".join(lines)
