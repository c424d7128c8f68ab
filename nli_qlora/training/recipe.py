"""The fine-tuning recipe: `setup()` builds the pieces in dependency order, `train()` reads top to bottom.

    zero-shot eval (validation, test)
    for each epoch:
        for each batch (bucketed by length):  train_step (the next one queued meanwhile) -> metrics `step`
        eval validation -> metrics `eval`;  checkpoint -> metrics `checkpoint`
    eval test -> predictions -> report.md, summary.json

A checkpoint is copied to host memory at its step boundary and written on a worker thread while the
next steps run (run.saving); its `checkpoint` record follows once it is complete on disk. A stop,
the next checkpoint and the run's end wait for it.

Side effects are all here and all explicit: the metrics file (rank 0 only), checkpoints,
prediction files and the report in the run directory; the terminal view.

Data parallel (torchrun, nli_qlora.infra.distributed): every rank runs this same recipe on its share of
each global batch and of each evaluation; train_step sums the gradients; rank 0 alone writes, and
the others wait at a barrier (never on the filesystem: machines need not share one) while it
writes a checkpoint, so that all stop or go on together. A resume loads the checkpoint that
run.handover agreed on, from this process's disk or as sent by the process that holds it.

Surviving interruptions (docs/reliability.md): a stop request (Ctrl-C, SIGTERM, SIGHUP) is honoured
at the next step boundary with a checkpoint; a resume restores the newest complete checkpoint and
cuts the metrics file back to what it held then, so redone steps appear once; disk failures become
one-line errors naming the path (infra.storage.writing); CUDA out of memory follows nli_qlora.infra.oom."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nli_qlora.config import RunConfig
from nli_qlora.data.batches import Encoded, bucketed_batches, micro_batches, step_batches, step_shapes, token_counts
from nli_qlora.data.read import Example, SplitStats, load_split, no_rows_left
from nli_qlora.data.token_cache import load_or_encode
from nli_qlora.infra import oom
from nli_qlora.infra.atomic import remove_leftovers
from nli_qlora.infra.console import ProgressView
from nli_qlora.infra.distributed import World
from nli_qlora.infra.errors import UserError
from nli_qlora.infra.interrupt import Interrupted, StopFlag
from nli_qlora.infra.machine import default_device, device_info, gb, peak_rss_gb, process_start, rss_gb, versions
from nli_qlora.infra.quiet import quiet_libraries
from nli_qlora.infra.storage import writing
from nli_qlora.model.bundle import ModelBundle, enable_checkpointing, load_bundle, with_lora
from nli_qlora.model.compile_layers import STATIC_SHAPES, inductor_cache, static_shapes
from nli_qlora.model.fused_norm import fused_norm_count
from nli_qlora.model.fused_rope import fused_rope_count
from nli_qlora.model.fused_swiglu import fused_swiglu_count
from nli_qlora.model.load import compute_dtype
from nli_qlora.run import checkpoint as ckpt
from nli_qlora.run.figure_worker import FigureWorker
from nli_qlora.run.handover import Handover
from nli_qlora.run.metrics import MetricsWriter, NullMetrics, resume_metrics
from nli_qlora.run.tensorboard import sinks_for
from nli_qlora.run.predictions import write_predictions
from nli_qlora.run.rundir import data_changed
from nli_qlora.run.saving import BackgroundSaves
from nli_qlora.training.evaluate import evaluate
from nli_qlora.training.optim import trainer_for
from nli_qlora.training.step import Trainer, loop_step


@dataclass
class Split:
    name: str
    examples: list[Example]
    rows: list[Encoded]
    stats: SplitStats


@dataclass(frozen=True)
class Pieces:
    """What setup() built, in dependency order: the recipe keeps them as attributes of the same names."""
    device: torch.device
    bundle: ModelBundle  # tokenizer, label tokens, the 4-bit base with LoRA
    splits: dict[str, Split]
    trainer: Trainer
    restored: Path | None  # the checkpoint a resume started from
    pos: ckpt.Position
    metrics: MetricsWriter | NullMetrics


class FineTune:
    def __init__(self, cfg: RunConfig, run_dir: Path, resume: bool = False, progress: ProgressView | None = None,
                 changed: dict | None = None, world: World | None = None, handed: Handover | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.changed = changed or {}  # settings a resume changed (train.RESUME_SETTINGS): {name: (old, new)}
        self.world = world or World()
        self.handed = handed or Handover()  # a resume's checkpoint, agreed among the processes
        self.view = progress or ProgressView(enabled=self.rank == 0)
        self.stop = StopFlag(announce=None if self.view.enabled else (lambda message: None))
        self.pos = ckpt.Position()
        self.metrics = NullMetrics()
        self.restored: Path | None = None
        self.last_checkpoint: Path | None = None
        self._saved_at: tuple | None = None  # the position of the newest checkpoint taken (on disk, or being written)
        self.saves = BackgroundSaves()  # checkpoints written on a worker thread while training goes on (rank 0)
        self.figure_worker: FigureWorker | None = None  # the report's pictures, drawn by another process (rank 0)
        self.ended = False
        self.t_start = time.time()
        self.process_start = process_start()  # before the imports and the model load; this process's under --resume
        self.startup: dict[str, float] = {}  # where the time before run_start goes: each piece's seconds (_lap)
        self._lap_at = self.process_start

    @property
    def rank(self) -> int:
        return self.world.rank

    # --- setup: each piece in dependency order ---------------------------------------------------

    def setup(self) -> Pieces:
        """Each piece in dependency order; every helper takes what it needs and returns what it builds."""
        self.stop.install()  # "immediate" until the metrics file is open: nothing to save before that
        quiet_libraries()
        torch.manual_seed(self.cfg.seed)
        self._setup_libraries()
        self._lap("imports")  # the interpreter, the flags and every import, from this process's start
        self.device = device = self._setup_device()
        self._lap("device")
        self.bundle = bundle = self._setup_model(device)
        self._lap("model")
        self.splits = splits = self._setup_data(bundle.tokenizer)
        self._lap("data")
        self.steps_per_epoch = math.ceil(len(splits["train"].rows) / self.cfg.batch_size)
        self.total_steps = self.steps_per_epoch * self.cfg.epochs
        trainer, notes = self._setup_optimizer(bundle, self.total_steps)
        self.trainer = trainer
        self._lap("trainer")
        restored, pos = self._setup_resume(bundle, trainer)
        self._lap("resume")
        self.restored, self.pos = restored, pos
        if restored is not None:
            self.last_checkpoint, self._saved_at = restored, self._here()
        self.world.broadcast_([trainer.flat.param.data] if trainer.flat is not None else [p.data for p in trainer.params])
        trainer.publish()  # bfloat16 adapter copies follow the masters just loaded or broadcast
        self.stop.mode = "graceful"  # from here a stop request is honoured at a step boundary
        self.metrics = metrics = self._setup_metrics(restored, notes)
        if device.type == "cuda":  # peaks from here on are training's, not loading's
            torch.cuda.reset_peak_memory_stats(device)
        return Pieces(device, bundle, splits, trainer, restored, pos, metrics)

    def _lap(self, piece: str) -> None:
        """Seconds since the last piece of setup ended, as startup[piece_s] in run_start (docs/metrics.md)."""
        now = time.time()
        self.startup[f"{piece}_s"] = round(now - self._lap_at, 3)
        self._lap_at = now

    @property
    def model(self):
        return self.bundle.model

    @property
    def answer_ids(self) -> list[list[int]] | None:
        return self.bundle.appended_answers(self.cfg.loss)

    def _setup_libraries(self) -> None:
        """Import here what the pieces below would each import at first use (transformers' model stack
        through peft, bitsandbytes: seconds, docs/benchmarks.md), so that the start-up's seconds split
        into imports and work."""
        import bitsandbytes  # noqa: F401
        import peft  # noqa: F401
        import transformers  # noqa: F401

    def _setup_device(self) -> torch.device:
        device = default_device(self.world.local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.view.log(f"device {device_info(device)['name']} ({device.type}), compute "
                      f"{str(compute_dtype(self.cfg, device))[6:]}"
                      + (f", {self.world.size} processes ({self.world.backend})" if self.world.enabled else ""))
        return device

    def _setup_model(self, device: torch.device) -> ModelBundle:
        bundle = with_lora(load_bundle(self.cfg, device))
        self.view.log(f"tokenizer {self.cfg.model}: label tokens {dict(zip(self.cfg.labels, bundle.label_ids))}")
        if self.cfg.gradient_checkpointing:
            enable_checkpointing(bundle.model)
        counts = bundle.counts
        self.view.log(f"model: LoRA on {bundle.matched}; trainable {counts['trainable']:,} of {counts['total']:,} "
                      f"({counts['trainable_percent']:.2f}%); bitsandbytes' packed count "
                      f"{counts['total_packed']:,}")
        if bundle.unmatched:
            self.view.log(f"WARNING: LoRA targets {bundle.unmatched} match no layer of this model and train nothing")
        return bundle

    def _setup_data(self, tokenizer) -> dict[str, Split]:
        splits = {}
        for name, file, size in (("train", self.cfg.train_file, self.cfg.train_size),
                                 ("validation", self.cfg.validation_file, self.cfg.validation_size),
                                 ("test", self.cfg.test_file, self.cfg.test_size)):
            examples, stats = load_split(name, file, self.cfg.dataset, size, self.cfg.skip_bad_rows,
                                         self.cfg.label_set)
            # encode's result; cached by --dry-run or a last run
            rows, too_long = load_or_encode(examples, tokenizer, self.cfg.prompt_template, self.cfg.max_length,
                                            stats.source, skip_long=self.cfg.skip_bad_rows, log=self.view.log,
                                            write=self.rank == 0)
            stats.bad_skipped += too_long
            stats.selected = len(rows)
            if not rows:  # nothing to train or evaluate on: never a run that "completes" having done nothing
                raise UserError(no_rows_left(name, stats.source, too_long, self.cfg.max_length))
            splits[name] = Split(name, examples, rows, stats)
            self.view.log(f"data {name}: {stats.selected} rows selected of {stats.rows_read} read "
                          f"({stats.unlabeled_dropped} unlabelled dropped, {stats.bad_skipped} bad skipped)")
            if short := stats.shortfall(name):
                self.view.log(f"WARNING: {short}")
        # each process reads its own copy of the files (on several machines, its own disk's): the
        # same rows everywhere, or the processes would train one model on different data
        for rank, theirs in enumerate(self.world.gather_object({n: s.stats.digest for n, s in splits.items()})):
            for name, split in splits.items():
                if theirs[name] != split.stats.digest:
                    raise UserError(f"{name} data: process {rank} read other rows than process {self.rank} from "
                                    f"{split.stats.source}: every machine needs the same data files")
        return splits

    def _setup_optimizer(self, bundle: ModelBundle, total_steps: int) -> tuple[Trainer, list[str]]:
        bundle.model.train()
        cfg = self.cfg
        shapes = None
        if cfg.compile:  # few shapes: each compiles on its own (model.compile_layers), counted up to the limit
            shapes = len(step_shapes(self.splits["train"].rows, cfg.batch_size, cfg.grad_accum, cfg.seed, cfg.epochs,
                                     cfg.bucketing, cfg.pad_to_multiple, self.answer_ids, self.world.shard,
                                     stop_after=STATIC_SHAPES))
        trainer, notes = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps, self.world, step_shapes=shapes)
        self.compiled_shapes = shapes if static_shapes(shapes) else None  # None: one dynamic graph, or uncompiled
        mode = "eager" if trainer.flat is None else ("flat optimizer + CUDA graphs" if trainer.graphed
                                                     else "flat optimizer")
        if trainer.copies is not None:
            mode += "; adapters compute in bfloat16 from float32 masters"
        if cfg.compile:
            mode += (f"; decoder layers compiled for each of the {shapes} batch shapes" if static_shapes(shapes)
                     else f"; decoder layers compiled for dynamic shapes ({STATIC_SHAPES + 1} or more batch shapes)")
            mode += f" (inductor cache {inductor_cache()})"
        self.view.log(f"step: {mode}; {self.cfg.optimizer} over {len(trainer.params)} LoRA tensors")
        return trainer, notes

    def _setup_resume(self, bundle: ModelBundle, trainer: Trainer) -> tuple[Path | None, ckpt.Position]:
        """(the checkpoint resumed from, where training stands): the newest complete checkpoint's
        adapter weights, optimizer, scheduler and RNG loaded; (None, the start) when there is none."""
        if not self.resume:
            return None, ckpt.Position()
        if self.rank == 0:
            for folder in (self.run_dir / "checkpoints", self.run_dir, self.run_dir / "predictions"):
                with writing(folder, "clean up"):
                    for name in remove_leftovers(folder):
                        self.view.log(f"resume: removed {folder / name}, left by an interrupted write")
        self.world.barrier()  # rank 0 cleaned up: what it reads is the agreed newest checkpoint
        path, files = self.handed.checkpoint(self.run_dir)  # files: sent by the process that holds it
        if path is None:
            self.view.log("resume: no complete checkpoint yet, starting from the beginning")
            return None, ckpt.Position()
        changed = data_changed(self.run_dir, {n: s.stats for n, s in self.splits.items()}) if self.rank == 0 else None
        changed = self.world.broadcast_object(changed)  # rank 0 holds the run's records; every process stops alike
        if changed:
            raise UserError(changed)
        files = files if files is not None else ckpt.read_files(path, "--resume")
        with trainer.masters_seated():  # the float32 masters, not --lora-compute-dtype's working copies
            ckpt.load_adapter_weights(bundle.model, path, files)
        pos = ckpt.load_trainer_state(path, trainer.optimizer, trainer.scheduler, files)
        self.view.log(f"resume: from {path} at step {pos.step} (epoch {pos.epoch}, {pos.epoch_step} batches done)")
        return path, pos

    def _setup_metrics(self, restored: Path | None, notes: list[str]):
        if self.rank != 0:
            return NullMetrics()
        path = self.run_dir / "metrics.jsonl"
        with writing(path):
            if restored is None:
                return self._start_metrics(path, notes)
            metrics, discarded = resume_metrics(path, restored, self.pos, self.changed, self.process_start,
                                                sinks_for(self.cfg.report_to, self.run_dir, purge_step=self.pos.step + 1),
                                                startup=self.startup)
        if discarded:
            self.view.log(f"resume: {discarded} steps logged after that checkpoint are redone")
        return metrics

    def _start_metrics(self, path: Path, notes: list[str]) -> MetricsWriter:
        metrics = MetricsWriter(path, sinks=sinks_for(self.cfg.report_to, self.run_dir))
        metrics.write(
            "run_start", process_start=round(self.process_start, 3), run_name=self.run_dir.name, run_dir=str(self.run_dir), config=self.cfg.to_dict(),
            model={"name": self.cfg.model, "architecture": type(self.model.get_base_model()).__name__,
                   "dtype": str(self.bundle.dtype)[6:], "quantization": self.cfg.quantization,
                   "dequantized": self.cfg.dequantize_base, "lora_compute_dtype": self.cfg.lora_compute_dtype,
                   "fused_lora": self.cfg.fused_lora, "fused_projections": self.cfg.fused_projections,
                   "fused_norms": fused_norm_count(self.model),
                   "fused_ropes": fused_rope_count(self.model),
                   "fused_swiglus": fused_swiglu_count(self.model),
                   "compiled": self.cfg.compile,
                   "compiled_shapes": self.compiled_shapes},
            startup=self.startup,
            device=device_info(self.device), world_size=self.world.size, params=self.bundle.counts,
            lora_targets={"matched": self.bundle.matched, "unmatched": self.bundle.unmatched},
            data={name: s.stats.as_dict() for name, s in self.splits.items()},
            planned={"epochs": self.cfg.epochs, "steps_per_epoch": self.steps_per_epoch,
                     "total_steps": self.total_steps, "samples": len(self.splits["train"].rows) * self.cfg.epochs},
            versions=versions(), label_token_ids=self.bundle.label_ids)
        if self.bundle.unmatched:
            metrics.write("warning", kind="lora_unmatched",
                          message=f"LoRA targets {self.bundle.unmatched} match no layer of this model and train nothing")
        for note in notes:
            metrics.write("warning", kind="paged_fallback", message=note)
        for name, split in self.splits.items():
            if short := split.stats.shortfall(name):
                metrics.write("warning", kind="data_shortfall", message=short)
        return metrics

    def _log(self, event: str, **fields) -> dict:
        """One metrics record; a disk failure becomes a DiskError naming the metrics file."""
        with writing(self.metrics.path or self.run_dir):
            return self.metrics.write(event, **fields)

    # --- train: top to bottom --------------------------------------------------------------------

    def train(self) -> dict:
        cfg, pos = self.cfg, self.pos
        train_rows = self.splits["train"].rows
        if self.rank == 0:  # the report's pictures, drawn by another process: it imports matplotlib meanwhile
            self.figure_worker = FigureWorker.start(self.run_dir)
        lengths = [len(r.prompt_ids) for r in train_rows]
        if cfg.zero_shot_eval and pos.step == 0 and not pos.zero_shot_done:
            self._evaluate("validation", epoch=0)
            if cfg.test_eval:
                self._evaluate("test", epoch=0)
        pos.zero_shot_done = True
        self._boundary()  # a stop asked for during the zero-shot evaluations: checkpoint step 0
        self.view.start(self.total_steps, done=pos.step)
        try:
            while pos.epoch <= cfg.epochs:
                batches = bucketed_batches(lengths, cfg.batch_size, cfg.seed, pos.epoch, cfg.bucketing)
                while pos.epoch_step < len(batches):  # the next batch of the epoch, if any, queues during this one
                    self._train_one(train_rows, batches[pos.epoch_step], batches[pos.epoch_step + 1:pos.epoch_step + 2])
                    # every N steps, except an epoch's last step: the epoch checkpoint follows its eval
                    self._boundary(due=bool(cfg.checkpoint_every_steps) and pos.step % cfg.checkpoint_every_steps == 0
                                   and pos.epoch_step < len(batches))
                self._evaluate("validation", epoch=pos.epoch)
                pos.epoch, pos.epoch_step = pos.epoch + 1, 0
                self._checkpoint(f"epoch-{pos.epoch - 1}", "epoch", background=True)
                self._boundary()
        finally:
            self.view.stop()
        self.stop.mode = "noted"  # the test evaluation is the last piece: finish it
        if self.figure_worker is not None:  # the learning curve's records are final: drawn while the GPU evaluates
            self.figure_worker.curve()
        test = self._evaluate("test", epoch=cfg.epochs) if cfg.test_eval else {}  # the last checkpoint writes meanwhile
        self._record_saved(block=True)
        self.world.barrier()  # none exits while rank 0's last checkpoint is half written
        return test

    def _here(self) -> tuple[int, int, int]:
        return self.pos.step, self.pos.epoch, self.pos.epoch_step

    def _boundary(self, due: bool = False) -> None:
        """A point where training can stop and resume exactly: checkpoint when `due` or a stop was
        asked for (unless the newest checkpoint is of this very point), then stop if asked. Under
        data parallelism the ranks agree first: a signal one rank saw stops them all here."""
        # decide on the agreed answer alone: a signal that lands after this rank's part of the vote
        # would otherwise send it to the checkpoint barrier while the others start the next step
        # (a deadlock, seen with two nodes); such a signal is honoured at the next boundary
        stop = self.world.any(self.stop.requested is not None)
        self._record_saved(block=stop)  # a checkpoint the worker finished; before a stop, wait for it
        if (due or stop) and self._saved_at != self._here():
            self._checkpoint(f"step-{self.pos.step}", "interrupt" if stop else "steps", background=not stop)
        elif stop:
            self.world.barrier()  # this point's checkpoint was still being written on rank 0: all leave once it is done
        if stop:
            self.stop.requested = self.stop.requested or "a stop request to another process of this run"
            raise Interrupted(f"stopped by {self.stop.requested} at step {self.pos.step} (epoch {self.pos.epoch}); "
                              f"checkpoint {self.last_checkpoint}; continue with: python -m nli_qlora.train "
                              f"--resume {self.run_dir}")

    def _micro_batches(self, mine: list[Encoded]) -> list[dict]:
        return step_batches(mine, self.cfg.grad_accum, self.bundle.tokenizer.pad_token_id, self.cfg.pad_to_multiple,
                            self.answer_ids, pin=self.device.type == "cuda")

    def _token_counts(self, chosen: list[Encoded]) -> tuple[int, int]:
        """Real and padded tokens of the whole global batch, as every rank's micro-batches hold them."""
        answer = self.answer_ids
        extra = (lambda r: len(answer[r.label])) if answer is not None else (lambda r: 0)
        groups = [[len(r.prompt_ids) + extra(r) for r in chunk] for rank in range(self.world.size)
                  for chunk in micro_batches(chosen[rank::self.world.size], self.cfg.grad_accum)]
        return token_counts(groups, self.cfg.pad_to_multiple)

    def _retrying(self, attempt, decide):
        """attempt() until it fits: on CUDA out of memory, free what the failed try held and apply
        nli_qlora.infra.oom's decision `decide()` (smaller batches from now on, or OutOfMemory)."""
        while True:
            try:
                return attempt()
            except torch.OutOfMemoryError:
                pass  # handled below, outside the except block: its traceback holds the activations
            self._free_after_oom()
            self._apply(decide())

    def _step(self, chosen: list[Encoded], following: list[Encoded] | None) -> tuple[dict, float]:
        """(stats, seconds) of the step on this rank's share of the batch, the `following` batch queued
        meanwhile (training.step.loop_step); on out of memory, retry with smaller micro-batches
        (--auto-batch) or stop with the settings that would fit."""
        mine = self.world.shard(chosen)
        # built when queued, after any retry of this step: with the micro-batch size it settled on
        then = (lambda: (self._micro_batches(self.world.shard(following)), len(following))) if following else None
        return self._retrying(
            lambda: loop_step(self.trainer, None if self.trainer.queued else self._micro_batches(mine), self.device,
                              global_rows=len(chosen), then=then),
            lambda: oom.train_oom(self.cfg, self.pos.step + 1, self.run_dir, self._gpu_total_gb()))

    def _free_after_oom(self) -> None:
        self.trainer.drop_queued()
        self.trainer.zero_grad()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()  # peaks from here on are the smaller batches' own

    def _gpu_total_gb(self) -> float | None:
        return device_info(self.device)["total_memory_gb"]

    def _apply(self, retry: oom.Retry) -> None:
        """Continue with smaller batches: the run directory's config.json (what a resume reads) and
        the checkpoints carry them from now on."""
        self.cfg = retry.cfg
        self._log("warning", kind="auto_batch", message=retry.message)
        self.view.log(f"WARNING: {retry.message}")
        if self.rank == 0:
            with writing(self.run_dir / "config.json"):
                self.cfg.save(self.run_dir / "config.json")

    def save_before_failing(self) -> None:
        """After an error that leaves the weights as they were at this step boundary (out of memory,
        a data error), keep the progress since the last checkpoint. Best effort: the error matters more."""
        if self.pos.step == 0 or self._saved_at == self._here() or isinstance(self.metrics, NullMetrics):
            return
        try:
            self._checkpoint(f"step-{self.pos.step}", "interrupt", wait=False)  # other ranks may be gone
        except Exception:  # the disk may be the problem; the original error is what to report
            pass

    def _train_one(self, rows: list[Encoded], batch_idx: list[int], following: list[list[int]]) -> None:
        chosen, *after = [sorted((rows[i] for i in idx), key=lambda r: len(r.prompt_ids))
                          for idx in [batch_idx, *following]]
        stats, dt = self._step(chosen, after[0] if after else None)  # dt: see training.step.loop_step
        cfg, pos = self.cfg, self.pos  # after the step: an out-of-memory retry may have changed the micro-batch
        tokens, padded = self._token_counts(chosen)  # the global batch: samples/s and tokens/s are global
        pos.step += 1
        pos.epoch_step += 1
        if stats["skipped"]:
            pos.bad_steps_in_a_row += 1
            pos.skipped_steps += 1
        else:
            pos.bad_steps_in_a_row = 0
        cuda = self.device.type == "cuda"
        record = self._log(
            "step", step=pos.step, epoch=pos.epoch, epoch_step=pos.epoch_step, steps_per_epoch=self.steps_per_epoch,
            loss=stats["loss"], lr=self.trainer.scheduler.get_last_lr()[0], grad_norm=stats["grad_norm"],
            samples=len(chosen), tokens=tokens, padded_tokens=padded, padding_fraction=round(1 - tokens / padded, 4),
            step_time_s=round(dt, 6), samples_per_s=round(len(chosen) / dt, 3), tokens_per_s=round(tokens / dt, 1),
            gpu_mem_allocated_gb=gb(torch.cuda.memory_allocated()) if cuda else None,
            gpu_mem_reserved_gb=gb(torch.cuda.memory_reserved()) if cuda else None,
            gpu_mem_peak_gb=gb(torch.cuda.max_memory_allocated()) if cuda else None,
            rss_gb=rss_gb(), skipped=stats["skipped"], captured=stats["captured"], queued=stats["queued"])
        self.view.step(record)
        if pos.bad_steps_in_a_row >= cfg.max_bad_steps:
            raise UserError(f"{pos.bad_steps_in_a_row} non-finite losses in a row at step {pos.step} "
                            f"({pos.skipped_steps} steps skipped in all; --max-bad-steps {cfg.max_bad_steps}): "
                            f"{self._non_finite_cause()}")

    def _non_finite_cause(self) -> str:
        lr = f"the learning rate is likely too high: lower --learning-rate (now {self.cfg.learning_rate:g})"
        if self.bundle.dtype == torch.float16:
            return (f"float16 overflows (Phi-2's attention does): use --compute-dtype bfloat16, or float32 "
                    f"on a GPU without bfloat16; or {lr}")
        return lr

    def _evaluate(self, split: str, epoch: int) -> dict:
        s = self.splits[split]
        result, logits = self._retrying(
            lambda: evaluate(self.trainer.scorer, s.rows, self.cfg.eval_batch_size,
                             self.bundle.tokenizer.pad_token_id, self.cfg.pad_to_multiple, self.world,
                             self.cfg.labels),
            lambda: oom.eval_oom(self.cfg, split, self.run_dir))
        pred_file = self._write_predictions(s, logits, epoch) if split == "test" else None
        record = self._log(
            "eval", split=split, step=self.pos.step, epoch=epoch, loss=result["loss"], accuracy=result["accuracy"],
            balanced_accuracy=result["balanced_accuracy"], per_class_recall=result["per_class_recall"],
            confusion=result["confusion"], labels=result["labels"], rows=result["rows"],
            eval_time_s=result["eval_time_s"], predictions=pred_file)
        self.view.log(f"eval {split} epoch {epoch}: balanced accuracy {result['balanced_accuracy']:.4f}, "
                      f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}")
        return record

    def _write_predictions(self, s: Split, logits: np.ndarray, epoch: int) -> str | None:
        if self.rank != 0:
            return None
        rel = f"predictions/{s.name}-epoch{epoch}.jsonl"
        probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        with writing(self.run_dir / rel):
            write_predictions(self.run_dir / rel, [s.examples[r.index] for r in s.rows], probs, self.cfg.labels)
        return rel

    def _checkpoint(self, name: str, kind: str, wait: bool = True, background: bool = False) -> None:
        """Rank 0 copies the checkpoint to host memory and writes it: on the worker thread while
        training goes on (`background`), else before returning. Every rank records it, and (`wait`)
        all meet at a barrier once rank 0 holds it, so that all go on alike; a stop and the run's end
        wait for the write itself (_record_saved), so none exits while it is half written. A barrier,
        not a look at the disk: the other processes may be on machines that never see rank 0's files."""
        path = self.run_dir / "checkpoints" / name
        if self.rank == 0:
            self._record_saved(block=True)  # one write at a time, recorded in order
            # the metrics file as it is now, without this checkpoint's own record: a resume from this
            # checkpoint cuts the file back to here and writes a `checkpoint` record of kind "restored"
            self.pos.metrics_offset = self.metrics.path.stat().st_size if self.metrics.path else 0
            with self.trainer.masters_seated():  # the float32 masters are what is saved
                snap = ckpt.snapshot(self.model, self.cfg, self.trainer.optimizer, self.trainer.scheduler, self.pos,
                                     torch_rng=self.trainer.rng_at_boundary())
            epoch = self.pos.epoch - 1 if kind == "epoch" else self.pos.epoch
            self.saves.start(path, lambda: ckpt.write(path, snap),
                             dict(path=str(path), step=self.pos.step, epoch=epoch, kind=kind))
            if not background:
                self._record_saved(block=True)
        if wait:
            self.world.barrier()
        self.last_checkpoint, self._saved_at = path, self._here()

    def _record_saved(self, block: bool) -> None:
        """The `checkpoint` record of a write the worker has finished (waiting for it when `block`). Its
        failure is raised here: a full or read-only disk as a DiskError naming the checkpoint."""
        write = self.saves.finished(block)
        if write is None:
            return
        with writing(write.path, "write checkpoint"):
            write.future.result()
        self._log("checkpoint", **write.record)

    # --- the end ---------------------------------------------------------------------------------

    def wind_down(self) -> None:
        """After an error or an interrupt: from here a signal is only noted while the run records its end."""
        self.stop.mode = "noted"

    def finish(self, status: str, error: str | None = None, log: str | None = None) -> None:
        """The run_end record, once. Best effort after a failure: a full or read-only disk may refuse
        it, and the one-line error on the terminal has already said why."""
        if self.ended:
            return
        self.ended = True
        self.stop.mode = "noted"
        try:
            self._record_saved(block=True)  # normally done; after an error, a write may be in flight
        except Exception:  # the error already being reported matters more
            if status == "completed":
                raise
        peak_gpu = gb(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
        try:
            self._log("run_end", status=status, wall_s=round(time.time() - self.t_start, 3),
                      process_wall_s=round(time.time() - self.process_start, 3), error=error, log=log,
                      gpu_mem_peak_gb=peak_gpu, peak_rss_gb=peak_rss_gb(), skipped_steps=self.pos.skipped_steps)
        except UserError:  # a DiskError
            if status == "completed":
                raise
        finally:
            self._close_metrics()

    def _close_metrics(self) -> None:
        try:
            self.metrics.close()
        except OSError:  # the unwritable tail of a failed write: nothing more can be saved
            pass

    def cleanup(self) -> None:
        self.saves.close()
        if self.figure_worker is not None:  # the report has had its answer, or the run ended otherwise
            self.figure_worker.close()
        self._close_metrics()
        self.stop.uninstall()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
