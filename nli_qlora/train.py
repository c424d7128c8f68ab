"""python -m nli_qlora.train: parse flags, resolve the config, run the recipe, report.

Exit status: 0 completed, 2 user error (one line), 130 interrupted (checkpoint saved),
1 a bug (traceback in RUN_DIR/error.log)."""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

from nli_qlora.config import PRESETS, OneLineParser, RunConfig, add_config_flags, resolve
from nli_qlora.errors import UserError

PROG = "python -m nli_qlora.train"


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Fine-tune a causal LM with QLoRA for NLI (SNLI).")
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="starting settings: seed = the published Phi-2 recipe (default), tiny = offline "
                             "CPU demo, smollm2-tuned = tuned SmolLM2-135M recipe")
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON settings over the preset")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last complete checkpoint")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything on the CPU without loading weights, then exit (see docs)")
    parser.add_argument("--quiet", action="store_true", help="no terminal output except errors")
    add_config_flags(parser)
    return parser


def run_dir_for(cfg: RunConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    return Path("runs") / f"{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(args, parser) -> tuple[RunConfig, Path, bool]:
    if args.resume:
        given = [a for a in sys.argv[1:] if a.startswith("--") and a.split("=")[0] not in ("--resume", "--quiet")]
        if given:
            raise UserError(f"--resume uses the run's own config.json; drop {given[0].split('=')[0]}")
        run_dir = Path(args.resume)
        if not (run_dir / "config.json").is_file():
            raise UserError(f"--resume: {run_dir} is not a run directory (no config.json)")
        return RunConfig.load(run_dir / "config.json").validate(), run_dir, True
    cfg = resolve(args)
    run_dir = run_dir_for(cfg)
    if (run_dir / "metrics.jsonl").exists():
        raise UserError(f"--output-dir: {run_dir} already holds a run; continue it with --resume {run_dir} "
                        f"or choose another directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.output_dir = str(run_dir)
        cfg.save(run_dir / "config.json")
    except OSError as err:
        raise UserError(f"--output-dir: cannot write to {run_dir}: {err.strerror}") from None
    return cfg, run_dir, False


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dry_run:
        from nli_qlora.preflight import main as preflight
        return preflight(args)
    from nli_qlora.console import ProgressView
    from nli_qlora.interrupt import Interrupted
    from nli_qlora.loop import FineTune
    from nli_qlora.report import write_report

    view = ProgressView(enabled=not args.quiet)
    recipe = None
    try:
        cfg, run_dir, resume = prepare_run_dir(args, parser)
        view.log(f"run directory {run_dir}")
        recipe = FineTune(cfg, run_dir, resume=resume, progress=view)
        recipe.setup()
        recipe.train()
        recipe.finish("completed")
        if recipe.rank == 0:
            write_report(run_dir)
            view.log(f"report {run_dir / 'report.md'}")
        return 0
    except UserError as err:
        if recipe is not None:
            recipe.finish("failed", error=str(err))
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.exit_code
    except (Interrupted, KeyboardInterrupt) as err:
        message = str(err) or "interrupted"
        if recipe is not None:
            recipe.finish("interrupted", error=message)
        print(f"{PROG}: {message}", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: keep the traceback in the run directory, say where
        log = None
        if recipe is not None:
            log = recipe.run_dir / "error.log"
            log.write_text(traceback.format_exc())
            recipe.finish("failed", error=f"{type(err).__name__}: {err}".splitlines()[0], log=str(log))
        print(f"{PROG}: internal error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
              + (f" (traceback in {log})" if log else ""), file=sys.stderr)
        if log is None:
            traceback.print_exc()
        return 1
    finally:
        if recipe is not None:
            recipe.cleanup()


if __name__ == "__main__":
    sys.exit(main())
