"""The run directory: where a new run goes, what a resume may change, and whether a run completed.

A resume runs the run's own config.json; only RESUME_SETTINGS (memory use and bookkeeping, not
what is trained) may change, and the run directory is locked for the one process that runs it
(under torchrun: global rank 0, the writer, on whichever machine it runs)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from nli_qlora.config import RunConfig, resolve
from nli_qlora.infra.atomic import write_text
from nli_qlora.infra.errors import QuietExit, UserError
from nli_qlora.infra.storage import writing
from nli_qlora.run.checkpoint import latest
from nli_qlora.run.handover import Handover, agree, settle
from nli_qlora.run.lock import lock_run_dir
from nli_qlora.run.metrics import completed_run, read_metrics
from nli_qlora.run.report import write_report

RESUME_SETTINGS = ("grad_accum", "gradient_checkpointing", "eval_batch_size", "auto_batch", "max_bad_steps",
                   "checkpoint_every_steps", "report_to", "dequantize_base", "lora_compute_dtype",
                   "fused_lora", "fused_norm", "fused_rope", "compile", "attention_kernel")
# they change memory use, speed or bookkeeping, not what is being trained: a dequantized base holds the
# 4-bit weights' very values; bfloat16 adapter copies are made from the same float32 masters, which
# the checkpoint holds, and only round the adapters' matmuls; the fused update, the fused norm, the
# fused rotary embedding, the compiled layers and another attention kernel round it differently (a run
# made before --attention-kernel existed resumes with torch's pick, as it ran: RunConfig.load_saved)
RESUME_FLAGS = {"resume", "quiet", "help"}


def run_dir_for(cfg: RunConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    return Path("runs") / f"{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def refuse_flags_on_resume(args, parser) -> None:
    """A resume runs the run's own config.json; only RESUME_SETTINGS may change."""
    for action in parser._actions:
        dest = action.dest
        if dest in RESUME_FLAGS or dest in RESUME_SETTINGS or not action.option_strings:
            continue
        if action.default is argparse.SUPPRESS:  # the RunConfig flags: present only when given
            given = hasattr(args, dest)
        else:
            given = getattr(args, dest, action.default) != action.default
        if given:
            allowed = " ".join("--" + n.replace("_", "-") for n in RESUME_SETTINGS)
            raise UserError(f"--resume continues with the run's own settings: drop {action.option_strings[0]} "
                            f"(only {allowed} may change)")


def resume_config(args, run_dir: Path) -> tuple[RunConfig, dict]:
    if not run_dir.is_dir():
        raise UserError(f"--resume: no such run directory {run_dir}")
    if not (run_dir / "config.json").is_file():
        raise UserError(f"--resume: {run_dir} is not a run directory (no config.json)")
    try:
        cfg = RunConfig.load_saved(run_dir / "config.json", flag="--resume")
    except UserError as err:
        raise UserError(f"--resume: {run_dir} is not a run directory of this toolkit ({err})") from None
    changed = {n: (getattr(cfg, n), getattr(args, n)) for n in RESUME_SETTINGS
               if hasattr(args, n) and getattr(args, n) != getattr(cfg, n)}
    cfg = dataclasses.replace(cfg, **{n: new for n, (_, new) in changed.items()}).validate()
    return cfg, changed


def data_changed(run_dir: Path, now: dict) -> str | None:
    """One line when a resumed run's rows are not those it started on (a file edited, cut or
    replaced since): its checkpoint's position, learning-rate schedule and before/after test
    scores all count those rows. None when they match, or the run predates row digests."""
    path = run_dir / "metrics.jsonl"
    start = next((r for r in read_metrics(path) if r.get("event") == "run_start"), None) if path.is_file() else None
    for name, stats in now.items():
        then = ((start or {}).get("data") or {}).get(name) or {}
        rows, digest = then.get("selected"), then.get("digest")
        if rows is None or (rows == stats.selected and digest in (None, stats.digest)):
            continue
        what = (f"{stats.selected:,} rows now, {rows:,} then" if rows != stats.selected
                else f"the same {rows:,} rows in number, other in content")
        return (f"--resume: the {name} data changed since the run started ({stats.source}: {what}); restore it, "
                f"or train anew in another --output-dir")
    return None


def prepare_run_dir(args, parser) -> tuple[RunConfig, Path, bool, dict]:
    """(config, run directory, resuming?, settings a resume changed), the directory locked for this process."""
    if args.resume:
        refuse_flags_on_resume(args, parser)
        run_dir = Path(args.resume)
        cfg, changed = resume_config(args, run_dir)
        with writing(run_dir / "config.json"):
            lock_run_dir(run_dir, "--resume")
            if changed and not completed_run(run_dir):
                cfg.save(run_dir / "config.json")
        return cfg, run_dir, True, changed
    cfg = resolve(args)
    run_dir = run_dir_for(cfg)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--output-dir: {run_dir} is a file, not a directory")
    if (run_dir / "metrics.jsonl").exists():
        raise UserError(f"--output-dir: {run_dir} already holds a run; continue it with --resume {run_dir} "
                        f"or choose another directory")
    with writing(run_dir, "create the run directory"):
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir, "--output-dir")
        cfg.output_dir = str(run_dir)
        cfg.save(run_dir / "config.json")
    return cfg, run_dir, False, {}


def prepare_everywhere(args, parser, world) -> tuple[RunConfig | None, Path, bool, dict, Handover]:
    """prepare_run_dir on rank 0 (it locks the directory and names it: a timestamp could differ
    between processes); the others take what it decided, or stop when it could not. A resume first
    agrees on the newest checkpoint any process's disk holds (run.handover: machines need not share
    a filesystem) and rank 0 writes what it lacked. A run that already completed: no config (None)."""
    if args.resume:
        try:
            refuse_flags_on_resume(args, parser)  # the same flags everywhere: every process refuses them
        except UserError:
            if world.writer:
                raise
            raise QuietExit(UserError.exit_code) from None
    handed = agree(world, Path(args.resume)) if args.resume else Handover()
    if handed.completed:
        return None, Path(args.resume), True, {}, handed
    if not world.enabled:
        return *prepare_run_dir(args, parser), handed
    prepared = error = None
    if world.writer:
        try:
            if args.resume:
                settle(Path(args.resume), handed)
            prepared = prepare_run_dir(args, parser)
        except UserError as err:
            error = err
    prepared, error = world.broadcast_object((prepared, error))
    if error is not None:
        if world.writer:
            raise error
        raise QuietExit(error.exit_code)
    return *prepared, handed


def rebuild_missing_report(run_dir: Path) -> bool:
    """Write report.md and summary.json when a completed run ended before writing them."""
    if (run_dir / "report.md").is_file() and (run_dir / "summary.json").is_file():
        return False
    with writing(run_dir / "report.md"):
        write_report(run_dir)
    return True


def resume_hint(run_dir: Path, prog: str) -> str:
    """What the user can do after a failure: resume from the newest checkpoint, or start over."""
    path = latest(run_dir)
    if path is None:
        return f"; no checkpoint yet: --resume {run_dir} starts over"
    return f"; continue from {path} with: {prog} --resume {run_dir}"


def write_error_log(run_dir: Path | None, text: str, rank: int = 0) -> Path | None:
    """A bug's traceback in RUN_DIR/error.log (error-rankN.log for another process); None when it cannot be written."""
    if run_dir is None or not run_dir.is_dir():
        return None
    path = run_dir / ("error.log" if rank == 0 else f"error-rank{rank}.log")
    try:
        write_text(path, text)
    except OSError:
        return None
    return path
