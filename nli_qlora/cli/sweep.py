"""python -m nli_qlora.sweep: choose training settings on validation rows, one run per variant.

    python -m nli_qlora.sweep --spec smollm2-tuned --output-dir sweeps/smol \\
        --train-file train.jsonl --validation-file validation.jsonl --test-file test.jsonl \\
        --devices 0 1 --final-seeds 1 2 3

Stages of a spec (nli_qlora.tools.sweep_spec) run in order, each variant a `python -m
nli_qlora.train` process with test evaluation off, in SWEEP_DIR/VARIANT. The best on validation
(balanced accuracy after the last epoch) is written as SWEEP_DIR/chosen.json, a config file for
the train CLI. --final-seeds then trains it once per seed and reads the test rows, once, for the
final table. sweep.json is the sweep's state: rerun the same command and finished variants are
not run again, interrupted ones resume from their checkpoints. Exit status: 0 done, 2 a user
error (one line), 130 interrupted (rerun to continue)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from nli_qlora.config import PRESETS, OneLineParser, RunConfig, add_config_flags, resolve
from nli_qlora.infra.errors import UserError
from nli_qlora.infra.atomic import write_text
from nli_qlora.tools.sweep_record import (Outcome, best, load_state, outcome_dict, read_outcome, render, save_state,
                                          spread)
from nli_qlora.tools.sweep_runner import Job, Runner, Slots, train_argv
from nli_qlora.tools.sweep_spec import (OWNED, Spec, Stage, Variant, find_spec, grid_options, load_spec,
                                        make_variant, stage_variants)

PROG = "python -m nli_qlora.sweep"
MIN_VALIDATION_ROWS = 2000


def build_parser() -> OneLineParser:
    p = OneLineParser(prog=PROG, description="Choose training settings on validation rows: one training run per "
                                             "variant, stage after stage; the best is written as a config file.")
    p.add_argument("--spec", metavar="FILE|NAME", help="the sweep's stages (YAML); a shipped name: smollm2-tuned, "
                                                       "smollm2-full (nli_qlora/tools/sweeps)")
    p.add_argument("--grid", action="append", default=[], metavar="SETTING=V1,V2",
                   help="one more stage over these values (repeat for a product), e.g. --grid learning-rate=1e-4,2e-4")
    p.add_argument("--preset", choices=list(PRESETS), default=None, help="starting settings (default: the spec's, else seed)")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON settings over the preset and the spec's base")
    p.add_argument("--devices", nargs="+", metavar="GPU", help="GPU indices; each variant runs on one "
                                                               "(CUDA_VISIBLE_DEVICES), e.g. --devices 0 1")
    p.add_argument("--jobs-per-device", type=int, default=1, metavar="N",
                   help="variants run at once on each GPU (or on the CPU without --devices); default 1")
    p.add_argument("--final-seeds", type=int, nargs="+", default=[], metavar="SEED",
                   help="train the chosen settings once per seed with test evaluation: the final table")
    p.add_argument("--retry-failed", action="store_true", help="run again the variants that failed last time")
    p.add_argument("--min-validation-rows", type=int, default=MIN_VALIDATION_ROWS, metavar="N",
                   help=f"refuse to choose on fewer validation rows (default {MIN_VALIDATION_ROWS}: about ±1 point)")
    add_config_flags(p)
    p.set_defaults(output_dir=None)
    return p


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


# --- settings ------------------------------------------------------------------------------------

def _grid_stage(items: list[str]) -> Stage | None:
    if not items:
        return None
    grid = {}
    for item in items:
        key, eq, values = item.partition("=")
        if not eq or not key or not values:
            raise UserError(f"--grid: expected SETTING=V1,V2, got {item!r}")
        key = key.replace("-", "_")
        grid[key] = grid_options(key, values.split(","), f"--grid: {key}")
    return Stage("grid", grid)


def _base_settings(args, spec: Spec | None) -> tuple[dict, str]:
    """preset -> spec base -> --config -> flags; the sweep's own settings checked."""
    if getattr(args, "test_eval", False):
        raise UserError("--test-eval: a sweep never reads test rows while choosing; use --final-seeds")
    if args.output_dir is None:
        raise UserError("--output-dir: required (the sweep's folder: one run directory per variant inside)")
    layer = spec.base if spec else {}
    if layer:
        RunConfig.from_dict({**RunConfig().to_dict(), **layer}, source=f"{spec.source}: base")  # typed, named
    cfg = resolve(args, layer=layer, default_preset=(spec.preset if spec and spec.preset else "seed"))
    base = cfg.to_dict()
    base["test_eval"] = False  # --final-seeds turns it on; the variants never
    if 0 < cfg.validation_size < args.min_validation_rows:
        raise UserError(f"--validation-size: {cfg.validation_size} rows choose by noise (±{_noise(cfg.validation_size)} "
                        f"points); use at least {args.min_validation_rows} or lower --min-validation-rows")
    if cfg.validation_file and cfg.test_file and Path(cfg.validation_file).resolve() == Path(cfg.test_file).resolve():
        raise UserError(f"--validation-file: {cfg.validation_file} is also the test file: choose on other rows")
    return base, cfg.preset


def _noise(rows: int) -> str:
    return f"{100 * (0.25 / max(rows, 1)) ** 0.5 * 2:.0f}"


# --- the sweep -----------------------------------------------------------------------------------

class Sweep:
    """Runs variants through the Runner and keeps sweep.json current after every run."""

    def __init__(self, out: Path, state: dict, runner: Runner, retry_failed: bool, min_rows: int):
        self.out, self.state, self.runner = out, state, runner
        self.retry_failed, self.min_rows = retry_failed, min_rows
        self.rows = {r["name"]: r for r in state["variants"]}
        self.by_key = {r["key"]: r for r in state["variants"] if r.get("same_as") is None}

    def save(self) -> None:
        save_state(self.out / "sweep.json", self.state)
        write_text(self.out / "sweep.md", render(self.state))

    def row(self, v: Variant) -> dict:
        """The variant's record: a new one, or the previous one when its settings are unchanged."""
        old = self.rows.get(v.name)
        if old is not None and old["key"] != v.key():
            raise UserError(f"{self.out / v.name}: holds variant {v.name} with other settings (the spec or flags "
                            f"changed); use another --output-dir or remove that directory")
        if old is not None:
            return old
        twin = self.by_key.get(v.key())
        row = {"name": v.name, "stage": v.stage, "choice": v.choice, "overrides": v.overrides, "key": v.key(),
               "run_dir": twin["run_dir"] if twin else v.name, "same_as": twin["name"] if twin else None,
               "outcome": twin["outcome"] if twin else outcome_dict(read_outcome(self.out / v.name, None, None)
                                                                       if (self.out / v.name).is_dir()
                                                                       else _pending())}
        if row["outcome"]["status"] == "failed" and twin is None and not (self.out / v.name / "config.json").is_file():
            row["outcome"] = outcome_dict(_pending())  # never started
        self.state["variants"].append(row)
        self.rows[v.name] = row
        if twin is None:
            self.by_key[row["key"]] = row
        return row

    def run(self, variants: list[Variant]) -> list[dict]:
        rows = [self.row(v) for v in variants]
        todo = [r for r in rows if r["same_as"] is None and self._needs_run(r)]
        jobs = [self._job(r, v) for r, v in zip(rows, variants) if r in todo]
        total = len(jobs)
        done = 0

        def finished(d) -> None:
            nonlocal done
            done += 1
            r = self.rows[d.job.name]
            outcome = read_outcome(self.out / r["run_dir"], d.exit_code, d.job.log)
            outcome.wall_s = round(d.wall_s, 1)
            r["outcome"] = outcome_dict(outcome)
            for twin in self.state["variants"]:
                if twin.get("same_as") == r["name"]:
                    twin["outcome"] = r["outcome"]
            rows_seen = outcome.validation_rows
            if rows_seen is not None:
                self.state["validation_rows"] = rows_seen
            self.save()
            what = (f"validation {100 * outcome.score:.1f}%" if outcome.score is not None
                    else outcome.status + (f": {outcome.error}" if outcome.error else ""))
            _say(f"[{done}/{total}] {r['name']}: {what} ({d.wall_s:.0f} s, slot {d.slot})")
            if rows_seen is not None and rows_seen < self.min_rows and not r["name"].startswith("final."):
                self.runner.stop()
                raise UserError(f"validation has {rows_seen} rows; the sweep chooses on at least {self.min_rows} "
                                f"(--min-validation-rows)")

        self.runner.run(jobs, finished)
        return rows

    def _needs_run(self, r: dict) -> bool:
        status = r["outcome"]["status"]
        return status in ("pending", "interrupted") or (status == "failed" and self.retry_failed)

    def _job(self, r: dict, v: Variant) -> Job:
        run_dir = self.out / r["run_dir"]
        log = self.out / "logs" / f"{r['name']}.log"
        if (run_dir / "config.json").is_file():
            saved = RunConfig.load(run_dir / "config.json").to_dict()
            want = {k: x for k, x in v.settings.items() if k != "output_dir"}
            if {k: x for k, x in saved.items() if k != "output_dir"} != want:
                raise UserError(f"{run_dir}: holds a run with other settings than variant {v.name}; use another "
                                f"--output-dir or remove that directory")
            return Job(r["name"], train_argv("--resume", str(run_dir), "--quiet"), log)
        config = self.out / "configs" / f"{r['name']}.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        RunConfig.from_dict({**v.settings, "output_dir": str(run_dir)}).save(config)
        return Job(r["name"], train_argv("--config", str(config), "--quiet"), log)


def _pending() -> Outcome:
    return Outcome("pending")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    runner = None
    try:
        if args.jobs_per_device < 1:
            raise UserError(f"--jobs-per-device: must be at least 1, got {args.jobs_per_device}")
        spec = load_spec(find_spec(args.spec)) if args.spec else None
        extra = _grid_stage(args.grid)
        stages = [*(spec.stages if spec else ()), *([extra] if extra else [])]
        if not stages:
            raise UserError("--spec or --grid: nothing to sweep")
        base, preset_name = _base_settings(args, spec)
        source = spec.source if spec else "--grid"
        choosing = {**base, "zero_shot_eval": False}  # the same pretrained score for every variant: once is enough
        for stage in stages:  # every value checked before the first run
            stage_variants(stage, {}, choosing, source)
        out = Path(args.output_dir)
        if out.exists() and not out.is_dir():
            raise UserError(f"--output-dir: {out} is a file, not a directory")
        out.mkdir(parents=True, exist_ok=True)
        state = load_state(out / "sweep.json")
        fresh = {"name": out.name, "spec": source, "preset": preset_name, "base": base, "validation_rows": None,
                 "variants": [], "stages": [], "chosen": None, "chosen_overrides": {}, "chosen_config": None,
                 "final": None}
        if state is not None and state.get("base") != json.loads(json.dumps(base)):
            raise UserError(f"--output-dir: {out} holds a sweep with other base settings (data, preset or flags "
                            f"changed); use another directory")
        state = {**fresh, **(state or {}), "stages": []}
        runner = Runner(Slots.make(args.devices, args.jobs_per_device))
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, frame: runner.stop(signum))
        sweep = Sweep(out, state, runner, args.retry_failed, args.min_validation_rows)

        incumbent = None
        for i, stage in enumerate(stages):
            if runner.stopping.is_set():
                break
            if i == 0:  # the first stage does not depend on the base's score: they run together
                rows = sweep.run([make_variant("base", "base", {}, {}, choosing, f"{source}: base"),
                                  *stage_variants(stage, {}, choosing, source)])
                incumbent, rows = rows[0], rows[1:]
            else:
                rows = sweep.run(stage_variants(stage, incumbent["overrides"], choosing, source))
            contenders = [incumbent, *[r for r in rows if r["name"] != incumbent["name"]]]
            best_row = best(contenders) or incumbent
            state["stages"].append({"name": stage.name, "incumbent": incumbent["name"],
                                    "keys": list(stage.grid), "variants": [r["name"] for r in contenders],
                                    "best": best_row["name"]})
            incumbent = best_row
            sweep.save()
        if runner.stopping.is_set() or incumbent is None or incumbent["outcome"]["score"] is None:
            sweep.save()
            if runner.stopping.is_set():
                _say(f"stopped; run the same command again to continue ({out / 'sweep.json'})")
                return 130
            raise UserError(f"no variant finished with a validation score; see {out / 'sweep.md'} and {out / 'logs'}")
        chosen = {k: v for k, v in base.items() if k != "output_dir"} | incumbent["overrides"]
        chosen_cfg = RunConfig.from_dict({**chosen, "test_eval": True, "output_dir": None})
        chosen_cfg.save(out / "chosen.json")
        state.update(chosen=incumbent["name"], chosen_config=str(out / "chosen.json"),
                     chosen_overrides={k: v for k, v in chosen_cfg.to_dict().items()
                                       if k not in OWNED and PRESETS[preset_name]().to_dict().get(k) != v})
        sweep.save()
        _say(f"chosen {incumbent['name']}: validation {100 * incumbent['outcome']['score']:.1f}% -> {out / 'chosen.json'}")
        if args.final_seeds:
            finals = [make_variant(f"final.seed-{s}", "final", {"seed": str(s)}, {**incumbent["overrides"], "seed": s},
                                   base, f"{source}: final") for s in args.final_seeds]
            for v in finals:
                v.settings["test_eval"] = True
            rows = sweep.run(finals)
            after = [r["outcome"]["test"]["after"] for r in rows if (r["outcome"].get("test") or {}).get("after") is not None]
            state["final"] = {"seeds": args.final_seeds, "runs": [{"seed": s, "run_dir": r["run_dir"], "outcome": r["outcome"]}
                                                                  for s, r in zip(args.final_seeds, rows)],
                              "test_after": spread(after) if after else None}
            sweep.save()
            if runner.stopping.is_set():
                _say(f"stopped; run the same command again to continue ({out / 'sweep.json'})")
                return 130
            if after:
                s = state["final"]["test_after"]
                _say(f"test balanced accuracy over {s['n']} seeds: mean {100 * s['mean']:.1f}%, sd {100 * s['std']:.1f}")
        _say(f"table {out / 'sweep.md'}")
        return 0
    except UserError as err:
        _say(f"error: {err}")
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
