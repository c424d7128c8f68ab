"""python -m nli_qlora.sweep: choose training settings on validation rows, one run per variant.

    python -m nli_qlora.sweep --spec smollm2-tuned --output-dir sweeps/smol \\
        --train-file train.jsonl --validation-file validation.jsonl --test-file test.jsonl \\
        --devices 0 1 --final-seeds 1 2 3

Stages of a spec (nli_qlora.tools.sweep_spec) run in order, each variant a `python -m
nli_qlora.train` process with test evaluation off, in SWEEP_DIR/VARIANT. The best on validation
(balanced accuracy after the last epoch) is written as SWEEP_DIR/chosen.json, a config file for
the train CLI. --final-seeds then trains it once per seed and reads the test rows, once, for the
final table. sweep.json is the sweep's state: rerun the same command and finished variants are
not run again, interrupted ones resume from their checkpoints. Exit status: 0 done, 1 done but
some runs failed (chosen among those that finished; named on the last line), 2 a user error (one
line), 130 interrupted (rerun to continue)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from nli_qlora.config import PRESETS, OneLineParser, add_config_flags, resolve
from nli_qlora.infra.errors import UserError
from nli_qlora.tools.sweep import Sweep, choose, open_state, run_finals, write_chosen
from nli_qlora.tools.sweep_runner import Runner, Slots
from nli_qlora.tools.sweep_spec import Spec, find_spec, grid_from_flags, load_spec, stage_variants

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
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="train every variant once per seed and score it by the mean (default: the spec's seeds, "
                        "else one run with the config's seed)")
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

def _base_settings(args, spec: Spec | None) -> tuple[dict, str]:
    """preset -> spec base -> --config -> flags; the sweep's own settings checked."""
    if getattr(args, "test_eval", False):
        raise UserError("--test-eval: a sweep never reads test rows while choosing; use --final-seeds")
    if args.output_dir is None:
        raise UserError("--output-dir: required (the sweep's folder: one run directory per variant inside)")
    cfg = resolve(args, layer=spec.base if spec else None, default_preset=(spec.preset if spec and spec.preset else "seed"),
                  layer_source=f"{spec.source}: base" if spec else "config")
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


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.jobs_per_device < 1:
            raise UserError(f"--jobs-per-device: must be at least 1, got {args.jobs_per_device}")
        spec = load_spec(find_spec(args.spec)) if args.spec else None
        extra = grid_from_flags(args.grid)
        stages = [*(spec.stages if spec else ()), *([extra] if extra else [])]
        if not stages:
            raise UserError("--spec or --grid: nothing to sweep")
        base, preset_name = _base_settings(args, spec)
        source = spec.source if spec else "--grid"
        choosing = {**base, "zero_shot_eval": False}  # the same pretrained score for every variant: once is enough
        for stage in stages:  # every value checked before the first run
            stage_variants(stage, {}, choosing, source)
        seeds = args.seeds if args.seeds is not None else list(spec.seeds if spec else ())
        if len(set(seeds)) != len(seeds):
            raise UserError(f"--seeds: each seed once, got {seeds}")
        if len(set(args.final_seeds)) != len(args.final_seeds):
            raise UserError(f"--final-seeds: each seed once, got {args.final_seeds}")
        seeded = next((f"{stage.name}: {key}" for stage in stages for key, options in stage.grid.items()
                       if any("seed" in o.settings for o in options)), None)
        if seeds and seeded:
            raise UserError(f"{seeded}: sets seed, which --seeds (or the spec's seeds) already sets for every variant")
        out = Path(args.output_dir)
        if out.exists() and not out.is_dir():
            raise UserError(f"--output-dir: {out} is a file, not a directory")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"--output-dir: cannot create {out}: {err.strerror or err}") from None
        state = open_state(out, {"name": out.name, "spec": source, "preset": preset_name, "base": base, "seeds": seeds,
                                 "validation_rows": None, "variants": [], "stages": [], "chosen": None,
                                 "chosen_overrides": {}, "chosen_config": None, "final": None})
        runner = Runner(Slots.make(args.devices, args.jobs_per_device))
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, frame: runner.stop(signum))
        sweep = Sweep(out, state, runner, args.retry_failed, args.min_validation_rows, seeds, _say)

        incumbent = choose(sweep, stages, choosing, source)
        if runner.stopping.is_set():
            return _stopped(out)
        if incumbent is None or incumbent["outcome"]["score"] is None:
            raise UserError(f"no variant finished with a validation score; see {out / 'sweep.md'} and {out / 'logs'}")
        if state.get("chosen") != incumbent["name"]:
            state["final"] = None  # the test table of an earlier choice is not this one's
        path = write_chosen(sweep, incumbent, base, preset_name)
        _say(f"chosen {incumbent['name']}: validation {100 * incumbent['outcome']['score']:.1f}% -> {path}")
        if args.final_seeds:
            s = run_finals(sweep, incumbent, base, args.final_seeds, source)
            if runner.stopping.is_set():
                return _stopped(out)
            if s:
                _say(f"test balanced accuracy over {s['n']} seed{'s' if s['n'] != 1 else ''}: "
                     f"mean {100 * s['mean']:.1f}%, sd {100 * s['std']:.1f}")
        _say(f"table {out / 'sweep.md'}")
        ours = {n for stage in state["stages"] for n in stage["variants"]}  # not what an earlier command ran
        ours |= {r["run_dir"] for r in (state.get("final") or {}).get("runs", [])}
        failed = [run["run_dir"] for v in state["variants"] if not v["same_as"] and v["name"] in ours
                  for run in v["runs"] if run["outcome"]["status"] == "failed"]
        if failed:  # the choice stands among the runs that finished; a script must not miss the rest
            _say(f"{len(failed)} run{'s' if len(failed) != 1 else ''} failed ({', '.join(failed[:5])}"
                 f"{', ...' if len(failed) > 5 else ''}): their errors are in sweep.md; --retry-failed runs them again")
            return 1
        return 0
    except UserError as err:
        _say(f"error: {err}")
        return err.exit_code


def _stopped(out: Path) -> int:
    _say(f"stopped; run the same command again to continue ({out / 'sweep.json'})")
    return 130


if __name__ == "__main__":
    sys.exit(main())
