"""The sweep's work: variants to runs on the Runner's slots, stage after stage, with sweep.json
kept current after every run (so a rerun resumes), then the chosen settings and the final runs.

A variant is one run, or with `seeds` one run per seed (SWEEP_DIR/VARIANT.seed-S) scored by
their mean: a single seed's luck moves validation accuracy by about as much as the settings a
sweep compares, and choosing the top of many single-seed runs picks luck (docs/results.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from nli_qlora.config import PRESETS, RunConfig
from nli_qlora.infra.atomic import write_text
from nli_qlora.infra.errors import UserError
from nli_qlora.tools.sweep_record import (Outcome, best, combine, load_state, outcome_dict, read_outcome, render,
                                          save_state, spread)
from nli_qlora.tools.sweep_runner import Job, Runner, train_argv
from nli_qlora.tools.sweep_spec import OWNED, Invalid, Stage, Variant, make_variant, stage_variants


class Sweep:
    """Runs variants through the Runner; `say` gets one line per finished run."""

    def __init__(self, out: Path, state: dict, runner: Runner, retry_failed: bool, min_rows: int,
                 seeds: list[int], say: Callable[[str], None]):
        self.out, self.state, self.runner = out, state, runner
        self.retry_failed, self.min_rows, self.seeds, self.say = retry_failed, min_rows, seeds, say
        self.rows = {r["name"]: r for r in state["variants"]}
        self.by_key = {r["key"]: r for r in state["variants"] if r.get("same_as") is None and r["key"]}
        self.too_few_rows: int | None = None

    def save(self) -> None:
        save_state(self.out / "sweep.json", self.state)
        write_text(self.out / "sweep.md", render(self.state))

    def skipped(self, v: Invalid) -> dict:
        """The record of a combination no run can take: in the table with its reason, never run."""
        row = {"name": v.name, "stage": v.stage, "choice": v.choice, "overrides": v.overrides, "key": None,
               "same_as": None, "runs": [], "outcome": outcome_dict(Outcome("skipped", error=v.error))}
        old = self.rows.get(v.name)
        if old is not None and old["key"] is not None:
            raise UserError(f"{self.out / v.name}: holds variant {v.name} with other settings (the spec or flags "
                            f"changed); use another --output-dir")
        if old is not None:
            self.state["variants"].remove(old)
        self.state["variants"].append(row)
        self.rows[v.name] = row
        self.say(f"skipped {v.name}: {v.error}")
        return row

    def row(self, v: Variant | Invalid, seeds: list[int | None]) -> dict:
        """The variant's record: a new one, or the previous one when its settings are unchanged."""
        if isinstance(v, Invalid):
            return self.skipped(v)
        old = self.rows.get(v.name)
        if old is not None and old["key"] != v.key():
            raise UserError(f"{self.out / v.name}: holds variant {v.name} with other settings (the spec or flags "
                            f"changed); use another --output-dir or remove that directory")
        if old is not None:
            return old
        twin = self.by_key.get(v.key())
        if twin is not None:
            runs = twin["runs"]
        else:
            runs = [{"seed": s, "run_dir": v.name if s is None else f"{v.name}.seed-{s}"} for s in seeds]
            for run in runs:
                run["outcome"] = outcome_dict(_found(self.out / run["run_dir"], _settings(v, run["seed"]), v.name))
        row = {"name": v.name, "stage": v.stage, "choice": v.choice, "overrides": v.overrides, "key": v.key(),
               "same_as": twin["name"] if twin else None, "runs": runs, "outcome": combine([r["outcome"] for r in runs])}
        self.state["variants"].append(row)
        self.rows[v.name] = row
        if twin is None:
            self.by_key[row["key"]] = row
        return row

    def run(self, variants: list[Variant], seeds: list[int | None] | None = None) -> list[dict]:
        rows = [self.row(v, seeds or self.seeds or [None]) for v in variants]
        jobs, owner = [], {}
        for r, v in zip(rows, variants):
            if r["same_as"] is not None or isinstance(v, Invalid):
                continue
            for run in r["runs"]:
                if self._needs_run(run["outcome"]):
                    jobs.append(self._job(run, v))
                    owner[jobs[-1].name] = (r, run)
        total, done = len(jobs), 0
        self.save()  # the variants are listed (pending) before their runs start: the dashboard shows them

        def finished(d) -> None:
            nonlocal done
            done += 1
            r, run = owner[d.job.name]
            outcome = read_outcome(self.out / run["run_dir"], d.exit_code, d.job.log)
            outcome.wall_s = round(d.wall_s, 1)
            run["outcome"] = outcome_dict(outcome)
            r["outcome"] = combine([x["outcome"] for x in r["runs"]])
            for twin in self.state["variants"]:
                if twin.get("same_as") == r["name"]:
                    twin["outcome"] = r["outcome"]
            rows_seen = outcome.validation_rows
            if rows_seen is not None:
                self.state["validation_rows"] = rows_seen
            self.save()
            what = (f"validation {100 * outcome.score:.1f}%" if outcome.score is not None
                    else outcome.status + (f": {outcome.error}" if outcome.error else ""))
            self.say(f"[{done}/{total}] {d.job.name}: {what} ({d.wall_s:.0f} s, slot {d.slot})")
            if rows_seen is not None and rows_seen < self.min_rows and r["stage"] != "final":
                self.too_few_rows = rows_seen
                self.runner.stop()  # the runs in flight checkpoint and are recorded as they end

        self.runner.run(jobs, finished)
        if self.too_few_rows is not None:
            raise UserError(f"validation has {self.too_few_rows} rows; the sweep chooses on at least {self.min_rows} "
                            f"(--min-validation-rows)")
        return rows

    def _needs_run(self, outcome: dict) -> bool:
        status = outcome["status"]
        return status in ("pending", "interrupted") or (status == "failed" and self.retry_failed)

    def _job(self, run: dict, v: Variant) -> Job:
        run_dir = self.out / run["run_dir"]
        name = run["run_dir"]
        log = self.out / "logs" / f"{name}.log"
        settings = _settings(v, run["seed"])
        if (run_dir / "config.json").is_file():
            _same_run(run_dir, settings, v.name)
            return Job(name, train_argv("--resume", str(run_dir), "--quiet"), log)
        config = self.out / "configs" / f"{name}.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        RunConfig.from_dict({**settings, "output_dir": str(run_dir)}).save(config)
        return Job(name, train_argv("--config", str(config), "--quiet"), log)


def _settings(v: Variant, seed: int | None) -> dict:
    return v.settings if seed is None else {**v.settings, "seed": seed}


def _same_run(run_dir: Path, settings: dict, name: str) -> None:
    """A run directory is taken over only when it trained exactly these settings."""
    saved = RunConfig.load(run_dir / "config.json").to_dict()
    if {k: x for k, x in saved.items() if k != "output_dir"} != {k: x for k, x in settings.items() if k != "output_dir"}:
        raise UserError(f"{run_dir}: holds a run with other settings than variant {name}; use another "
                        f"--output-dir or remove that directory")


def _found(run_dir: Path, settings: dict, name: str) -> Outcome:
    """What a run directory already holds: a rerun of the sweep picks up where the last one stopped
    (also when sweep.json was lost), and never takes another run's result for this variant's."""
    if not (run_dir / "config.json").is_file():
        return Outcome("pending")  # never started
    _same_run(run_dir, settings, name)
    return read_outcome(run_dir, None, None)


def open_state(out: Path, fresh: dict) -> dict:
    """The folder's sweep.json when its base settings and seeds are these, else a fresh state;
    another sweep's folder is refused (one line)."""
    state = load_state(out / "sweep.json")
    if state is not None and _placeless(state.get("base")) != _placeless(json.loads(json.dumps(fresh["base"]))):
        raise UserError(f"--output-dir: {out} holds a sweep with other base settings (data, preset or flags "
                        f"changed); use another directory")
    if state is not None and state.get("seeds", []) != fresh["seeds"]:
        raise UserError(f"--seeds: {out} holds a sweep with seeds {state.get('seeds') or 'from the config'}, "
                        f"not {fresh['seeds'] or 'from the config'}; use another directory")
    # what this command chooses and runs is decided afresh; the runs, and their outcomes, are kept
    return {**fresh, **(state or {}), "stages": [], "spec": fresh["spec"], "name": fresh["name"]}


def _placeless(base) -> dict | None:
    """Base settings without the folder: the same sweep reached by another path, or moved, is the same."""
    return {k: v for k, v in base.items() if k != "output_dir"} if isinstance(base, dict) else None


def choose(sweep: Sweep, stages: list[Stage], choosing: dict, source: str) -> dict | None:
    """Stage after stage, each on top of the best so far; the incumbent competes in every stage.
    The first stage does not depend on the base's score, so they run together."""
    incumbent = None
    for i, stage in enumerate(stages):
        if sweep.runner.stopping.is_set():
            break
        if i == 0:
            rows = sweep.run([make_variant("base", "base", {}, {}, choosing, f"{source}: base"),
                              *stage_variants(stage, {}, choosing, source)])
            incumbent, rows = rows[0], rows[1:]
        else:
            rows = sweep.run(stage_variants(stage, incumbent["overrides"], choosing, source, skip_invalid=True))
        contenders = [incumbent, *[r for r in rows if r["name"] != incumbent["name"]]]
        best_row = best(contenders) or incumbent
        sweep.state["stages"].append({"name": stage.name, "incumbent": incumbent["name"], "keys": list(stage.grid),
                                      "variants": [r["name"] for r in contenders], "best": best_row["name"]})
        incumbent = best_row
        sweep.save()
    return incumbent


def write_chosen(sweep: Sweep, incumbent: dict, base: dict, preset_name: str) -> Path:
    """chosen.json: the chosen settings as a config file for the train CLI (test evaluation on)."""
    chosen = {k: v for k, v in base.items() if k != "output_dir"} | incumbent["overrides"]
    cfg = RunConfig.from_dict({**chosen, "test_eval": True, "output_dir": None})
    path = sweep.out / "chosen.json"
    cfg.save(path)
    preset = PRESETS[preset_name]().to_dict()
    sweep.state.update(chosen=incumbent["name"], chosen_config=str(path),
                       chosen_overrides={k: v for k, v in cfg.to_dict().items()
                                         if k not in OWNED and preset.get(k) != v})
    sweep.save()
    return path


def run_finals(sweep: Sweep, incumbent: dict, base: dict, seeds: list[int], source: str) -> dict | None:
    """The chosen settings once per seed, with test evaluation: the only runs that read test rows."""
    # named after the chosen variant: a later sweep in this folder that chooses otherwise gets runs of its own
    finals = [make_variant(f"final.{incumbent['name']}.seed-{s}", "final", {"seed": str(s)},
                           {**incumbent["overrides"], "seed": s}, base, f"{source}: final", test_eval=True)
              for s in seeds]
    rows = sweep.run(finals, seeds=[None])  # each final run has its own seed already
    after = [r["outcome"]["test"]["after"] for r in rows if (r["outcome"].get("test") or {}).get("after") is not None]
    sweep.state["final"] = {"seeds": seeds, "runs": [{"seed": s, "run_dir": r["runs"][0]["run_dir"], "outcome": r["outcome"]}
                                                     for s, r in zip(seeds, rows)],
                            "test_after": spread(after) if after else None}
    sweep.save()
    return sweep.state["final"]["test_after"]
