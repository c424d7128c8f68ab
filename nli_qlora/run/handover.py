"""A resume across machines that share no filesystem: the newest checkpoint any process holds wins.

    every process   Holding: is the run directory on my disk, did the run complete, my newest
                    complete checkpoint (step, metrics offset) and its name
    all_gather      -> the holder: the lowest rank holding the newest checkpoint (or, with none
                       anywhere, the run directory)
    broadcast       only when some process lacks it: the holder's run files (config.json,
                    metrics.jsonl, predictions/, the checkpoint), {relative path: bytes}
    rank 0          writes what it lacked into its run directory (it is the writer, on whichever
                    machine it landed), then continues the run's files there as usual
    the others      load the checkpoint from the bytes they received; they never write

On one machine, or on a shared filesystem, every process sees the same: nothing is sent, each
reads its own disk as before. One process: no collective at all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nli_qlora.infra.atomic import staged_dir, write_bytes
from nli_qlora.infra.distributed import World
from nli_qlora.infra.errors import QuietExit, UserError
from nli_qlora.infra.storage import writing
from nli_qlora.run import checkpoint as ckpt
from nli_qlora.run.lock import lock_run_dir
from nli_qlora.run.metrics import completed_run

RUN_FILES = ("config.json", "metrics.jsonl")  # with predictions/*.jsonl and the checkpoint's files


@dataclass(frozen=True)
class Holding:
    """What one process's own disk holds of the run."""
    run_dir: bool = False
    completed: bool = False
    key: tuple[int, int] | None = None  # the newest complete checkpoint's (step, metrics offset)
    name: str | None = None
    error: str | None = None  # a damaged checkpoint found while looking


@dataclass(frozen=True)
class Handover:
    """What a resume starts from, the same on every process."""
    completed: bool = False
    reporter: bool = True  # this process says that the run already completed
    agreed: bool = False  # `name` was agreed among processes (else: this process's own newest)
    name: str | None = None  # the checkpoint every process resumes from; None: none anywhere
    files: dict[str, bytes] | None = None  # the holder's run files, when this process's disk lacks them

    def checkpoint(self, run_dir: Path) -> tuple[Path | None, dict[str, bytes] | None]:
        """(the checkpoint to resume from, its files when they came from another process, else None)."""
        if not self.agreed:
            return ckpt.latest(run_dir), None
        if self.name is None:
            return None, None
        prefix = f"checkpoints/{self.name}/"
        files = None if self.files is None else {k[len(prefix):]: v for k, v in self.files.items()
                                                 if k.startswith(prefix)}
        return Path(run_dir) / "checkpoints" / self.name, files


def look(run_dir: Path) -> Holding:
    """This process's own disk."""
    if not (run_dir / "config.json").is_file():
        return Holding()
    try:
        path = ckpt.latest(run_dir)
    except UserError as err:  # a damaged state.json
        return Holding(run_dir=True, error=str(err))
    return Holding(run_dir=True, completed=completed_run(run_dir) is not None,
                   key=ckpt.order(path) if path is not None else None, name=path.name if path is not None else None)


def agree(world: World, run_dir: Path) -> Handover:
    """Every process's disk compared; the newest checkpoint sent to those that lack it (see above).
    Rank 0 still has to `settle` what it received before it reads its run directory."""
    if not world.enabled:
        return Handover(completed=completed_run(run_dir) is not None)
    holdings = world.gather_object(look(run_dir))
    _raise_first_error(world, [h.error for h in holdings])
    if any(h.completed for h in holdings):
        return Handover(completed=True, reporter=world.rank == min(r for r, h in enumerate(holdings) if h.completed))
    have = [r for r, h in enumerate(holdings) if h.run_dir]
    if not have:  # nowhere: rank 0's prepare_run_dir says so
        return Handover(agreed=True)
    newest = max((holdings[r].key or (-1, -1), holdings[r].name or "") for r in have)
    holder = min(r for r in have if ((holdings[r].key or (-1, -1)), holdings[r].name or "") == newest)
    best = holdings[holder]
    if all(h == best for h in holdings):  # one machine, or a shared filesystem
        return Handover(agreed=True, name=best.name)
    sent = error = None
    if world.rank == holder:
        try:
            sent = run_files(run_dir, best.name)
        except UserError as err:  # the newest checkpoint is damaged: the holder names it
            error = str(err)
    sent, error = world.broadcast_object((sent, error), src=holder)
    _raise_first_error(world, [error if r == holder else None for r in range(world.size)])
    return Handover(agreed=True, name=best.name, files=None if holdings[world.rank] == best else sent)


def _raise_first_error(world: World, errors: list[str | None]) -> None:
    """The first process with an error says it; the others exit quietly with the same status."""
    failed = [r for r, e in enumerate(errors) if e is not None]
    if failed:
        if world.rank == failed[0]:
            raise UserError(errors[failed[0]])
        raise QuietExit(UserError.exit_code)


def run_files(run_dir: Path, name: str | None) -> dict[str, bytes]:
    """What a writer on another disk needs to continue the run: {path relative to the run dir: bytes}."""
    files = {rel: (run_dir / rel).read_bytes() for rel in RUN_FILES if (run_dir / rel).is_file()}
    predictions = run_dir / "predictions"
    for path in sorted(predictions.glob("*.jsonl")) if predictions.is_dir() else []:
        files[f"predictions/{path.name}"] = path.read_bytes()
    if name is not None:
        path = run_dir / "checkpoints" / name
        files.update({f"checkpoints/{name}/{k}": v for k, v in ckpt.read_files(path, "--resume").items()})
    return files


def settle(run_dir: Path, handed: Handover) -> None:
    """Rank 0 writes the run files it received (none when its disk held the newest already): its run
    directory then continues the run exactly as the holder's would have."""
    if handed.files is None:
        return
    with writing(run_dir, "receive the run directory from another machine"):
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir, "--resume")
        prefix = f"checkpoints/{handed.name}/"
        for rel, data in handed.files.items():
            if not rel.startswith(prefix):
                (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                write_bytes(run_dir / rel, data)
        if handed.name is not None:
            with staged_dir(run_dir / "checkpoints" / handed.name) as tmp:
                for rel, data in handed.files.items():
                    if rel.startswith(prefix) and rel != prefix + "COMPLETE":  # staged_dir writes it last
                        (tmp / rel[len(prefix):]).write_bytes(data)
