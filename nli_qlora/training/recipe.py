"""The fine-tuning recipe: `setup()` builds the pieces in dependency order, `train()` reads top to bottom.

    zero-shot eval (validation, test)
    for each epoch:
        for each batch (bucketed by length):  train_step -> metrics `step`
        eval validation -> metrics `eval`;  checkpoint -> metrics `checkpoint`
    eval test -> predictions -> report.md, summary.json

Side effects are all here and all explicit: the metrics file (rank 0 only), checkpoints,
prediction files and the report in the run directory; the terminal view.

Data parallel (torchrun, nli_qlora.distributed): every rank runs this same recipe on its share of
each global batch and of each evaluation; train_step sums the gradients; rank 0 alone writes, and
the others wait for its checkpoints so that all stop or go on together.

Surviving interruptions (docs/reliability.md): a stop request (Ctrl-C, SIGTERM, SIGHUP) is honoured
at the next step boundary with a checkpoint; a resume restores the newest complete checkpoint and
cuts the metrics file back to what it held then, so redone steps appear once; disk failures become
one-line errors naming the path (storage.writing); CUDA out of memory follows nli_qlora.oom."""

from __future__ import annotations

import json
import math
import os
import resource
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nli_qlora.run import checkpoint as ckpt
from nli_qlora.infra import oom
from nli_qlora.infra.atomic import open_atomic, remove_leftovers
from nli_qlora.data.batches import Encoded, bucketed_batches, collate, token_counts
from nli_qlora.config import LABELS, RunConfig
from nli_qlora.infra.console import ProgressView
from nli_qlora.data.read import Example, SplitStats, load_split
from nli_qlora.infra.distributed import World
from nli_qlora.infra.errors import UserError
from nli_qlora.training.evaluate import evaluate
from nli_qlora.infra.interrupt import Interrupted, StopFlag
from nli_qlora.run.metrics import MetricsWriter, NullMetrics
from nli_qlora.model.load import (attach_lora, compute_dtype, load_base_model, load_tokenizer, match_targets,
                             parameter_counts, resolve_source, tokenizer_source)
from nli_qlora.training.optim import build_optimizer, build_scheduler, quiet_paged_fallback
from nli_qlora.data.prompt import answer_token_ids, label_token_ids
from nli_qlora.training.scoring import LabelScorer
from nli_qlora.training.step import Trainer, build_trainer, to_device, train_step
from nli_qlora.infra.storage import writing



@dataclass
class Split:
    name: str
    examples: list[Example]
    rows: list[Encoded]
    stats: SplitStats


def _gb(n: float | None) -> float | None:
    return None if n is None else round(n / 2**30, 4)


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30, 4)


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 4)  # Linux reports KiB


def device_info(device: torch.device) -> dict:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "count": torch.cuda.device_count(),
                "total_memory_gb": _gb(props.total_memory), "capability": f"{props.major}.{props.minor}"}
    return {"type": "cpu", "name": "cpu", "count": os.cpu_count(), "total_memory_gb": None, "capability": None}


def versions() -> dict:
    import bitsandbytes
    import peft
    import transformers
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "bitsandbytes": bitsandbytes.__version__}


def quiet_libraries() -> None:
    """Our own view reports progress; the libraries' bars and deprecation chatter only add noise."""
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    quiet_paged_fallback()


def _records(data: bytes) -> list[dict]:
    """The parseable records in a piece of a metrics file (a torn line from a crash is skipped)."""
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


class FineTune:
    def __init__(self, cfg: RunConfig, run_dir: Path, resume: bool = False, progress: ProgressView | None = None,
                 changed: dict | None = None, world: World | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.changed = changed or {}  # settings a resume changed (train.RESUME_SETTINGS): {name: (old, new)}
        self.world = world or World()
        self.view = progress or ProgressView(enabled=self.rank == 0)
        self.stop = StopFlag(announce=None if self.view.enabled else (lambda message: None))
        self.pos = ckpt.Position()
        self.metrics = NullMetrics()
        self.restored: Path | None = None
        self.last_checkpoint: Path | None = None
        self._saved_at: tuple | None = None  # the position of the newest checkpoint on disk
        self.ended = False
        self.t_start = time.time()

    @property
    def rank(self) -> int:
        return self.world.rank

    # --- setup: each piece in dependency order ---------------------------------------------------

    def setup(self) -> None:
        self.stop.install()  # "immediate" until the metrics file is open: nothing to save before that
        quiet_libraries()
        torch.manual_seed(self.cfg.seed)
        self.device = self._setup_device()
        self.tokenizer, self.label_ids = self._setup_tokenizer()
        self.splits = self._setup_data()
        self.model, self.matched, self.unmatched = self._setup_model()
        self.trainer = self._setup_optimizer()
        self.restored = self._setup_resume()
        self.world.broadcast_([self.trainer.flat.param.data] if self.trainer.flat is not None
                              else [p.data for p in self.trainer.params])
        self.stop.mode = "graceful"  # from here a stop request is honoured at a step boundary
        self.metrics = self._setup_metrics(self.restored)
        if self.device.type == "cuda":  # peaks from here on are training's, not loading's
            torch.cuda.reset_peak_memory_stats(self.device)

    def _setup_device(self) -> torch.device:
        device = torch.device("cuda", self.world.local_rank) if torch.cuda.is_available() else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.dtype = compute_dtype(self.cfg, device)
        self.view.log(f"device {device_info(device)['name']} ({device.type}), compute {str(self.dtype)[6:]}"
                      + (f", {self.world.size} processes ({self.world.backend})" if self.world.enabled else ""))
        return device

    def _setup_tokenizer(self):
        self.source = resolve_source(self.cfg)
        tok = load_tokenizer(tokenizer_source(self.cfg, self.source))
        ids = label_token_ids(tok, self.cfg.label_words)
        self.view.log(f"tokenizer {self.cfg.model}: label tokens {dict(zip(LABELS, ids))}")
        # the lm loss appends each row's answer tokens; the other losses read the prompt alone
        self.answer_ids = answer_token_ids(tok, self.cfg.label_words) if self.cfg.loss == "lm" else None
        return tok, ids

    def _setup_data(self) -> dict[str, Split]:
        from nli_qlora.data.token_cache import load_or_encode  # encode's result; cached by --dry-run or a last run
        splits = {}
        for name, file, size in (("train", self.cfg.train_file, self.cfg.train_size),
                                 ("validation", self.cfg.validation_file, self.cfg.validation_size),
                                 ("test", self.cfg.test_file, self.cfg.test_size)):
            examples, stats = load_split(name, file, self.cfg.dataset, size, self.cfg.skip_bad_rows)
            rows, too_long = load_or_encode(examples, self.tokenizer, self.cfg.prompt_template, self.cfg.max_length,
                                            stats.source, skip_long=self.cfg.skip_bad_rows, log=self.view.log,
                                            write=self.rank == 0)
            stats.bad_skipped += too_long
            stats.selected = len(rows)
            splits[name] = Split(name, examples, rows, stats)
            self.view.log(f"data {name}: {stats.selected} rows selected of {stats.rows_read} read "
                          f"({stats.unlabeled_dropped} unlabelled dropped, {stats.bad_skipped} bad skipped)")
        return splits

    def _setup_model(self):
        model = load_base_model(self.cfg, self.source, self.device, self.dtype)
        matched, unmatched = match_targets(model, self.cfg.target_modules)
        model = attach_lora(model, self.cfg, matched)
        if self.cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        self.counts = parameter_counts(model)
        self.view.log(f"model: LoRA on {matched}; trainable {self.counts['trainable']:,} of {self.counts['total']:,} "
                      f"({self.counts['trainable_percent']:.2f}%); bitsandbytes' packed count "
                      f"{self.counts['total_packed']:,}")
        if unmatched:
            self.view.log(f"WARNING: LoRA targets {unmatched} match no layer of this model and train nothing")
        return model, matched, unmatched

    def _setup_optimizer(self) -> Trainer:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        quiet_paged_fallback()
        self.steps_per_epoch = math.ceil(len(self.splits["train"].rows) / cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.optimizer_notes = []

        def make_optimizer(opt_params):
            optimizer, self.optimizer_notes = build_optimizer(cfg, opt_params)
            return optimizer

        self.model.train()
        trainer = build_trainer(LabelScorer(self.model, self.label_ids), params, make_optimizer,
                                lambda opt: build_scheduler(cfg, opt, self.total_steps), cfg.loss,
                                cfg.max_grad_norm, cfg.step_mode, cfg.gradient_checkpointing)
        trainer.world = self.world
        mode = "eager" if trainer.flat is None else ("flat optimizer + CUDA graphs" if trainer.graphed
                                                     else "flat optimizer")
        self.view.log(f"step: {mode}; {cfg.optimizer} over {len(params)} LoRA tensors")
        return trainer

    def _setup_resume(self) -> Path | None:
        """Load the newest complete checkpoint: adapter weights, optimizer, scheduler, RNG, position."""
        if not self.resume:
            return None
        if self.rank == 0:
            for folder in (self.run_dir / "checkpoints", self.run_dir, self.run_dir / "predictions"):
                with writing(folder, "clean up"):
                    for name in remove_leftovers(folder):
                        self.view.log(f"resume: removed {folder / name}, left by an interrupted write")
        self.world.barrier()  # rank 0 cleaned up: every rank now finds the same newest checkpoint
        path = ckpt.latest(self.run_dir)
        if path is None:
            self.view.log("resume: no complete checkpoint yet, starting from the beginning")
            return None
        ckpt.load_adapter_weights(self.model, path)
        self.pos = ckpt.load_trainer_state(path, self.trainer.optimizer, self.trainer.scheduler)
        self.last_checkpoint, self._saved_at = path, self._here()
        self.view.log(f"resume: from {path} at step {self.pos.step} (epoch {self.pos.epoch}, "
                      f"{self.pos.epoch_step} batches done)")
        return path

    def _setup_metrics(self, restored: Path | None):
        if self.rank != 0:
            return NullMetrics()
        path = self.run_dir / "metrics.jsonl"
        with writing(path):
            return self._continue_metrics(path, restored) if restored else self._start_metrics(path)

    def _continue_metrics(self, path: Path, restored: Path) -> MetricsWriter:
        """Cut the file back to what it held when `restored` was saved: later lines are redone."""
        size = path.stat().st_size if path.is_file() else 0
        if size < self.pos.metrics_offset:
            raise UserError(f"--resume: {path} holds {size} bytes, fewer than the {self.pos.metrics_offset} it held "
                            f"when {restored} was saved; it was replaced or cut, so the run cannot continue")
        with open(path, "rb") as f:
            f.seek(self.pos.metrics_offset)
            later = _records(f.read())
        ends = [r for r in later if r.get("event") == "run_end"]
        discarded = sum(r.get("event") == "step" for r in later)
        with open(path, "r+b") as f:
            f.truncate(self.pos.metrics_offset)
            os.fsync(f.fileno())
        metrics = MetricsWriter(path, append=True)
        metrics.write("checkpoint", path=str(restored), step=self.pos.step,
                      epoch=self.pos.epoch - (self.pos.epoch_step == 0), kind="restored")
        metrics.write("resume", checkpoint=str(restored), step=self.pos.step, epoch=self.pos.epoch,
                      epoch_step=self.pos.epoch_step, previous_status=ends[-1]["status"] if ends else "killed",
                      discarded_steps=discarded)
        for name, (old, new) in self.changed.items():
            metrics.write("warning", kind="resume_setting",
                          message=f"resumed with --{name.replace('_', '-')} {new} (was {old})")
        if discarded:
            self.view.log(f"resume: {discarded} steps logged after that checkpoint are redone")
        return metrics

    def _start_metrics(self, path: Path) -> MetricsWriter:
        metrics = MetricsWriter(path)
        metrics.write(
            "run_start", run_name=self.run_dir.name, run_dir=str(self.run_dir), config=self.cfg.to_dict(),
            model={"name": self.cfg.model, "architecture": type(self.model.get_base_model()).__name__,
                   "dtype": str(self.dtype)[6:], "quantization": self.cfg.quantization},
            device=device_info(self.device), world_size=self.world.size, params=self.counts,
            lora_targets={"matched": self.matched, "unmatched": self.unmatched},
            data={name: s.stats.as_dict() for name, s in self.splits.items()},
            planned={"epochs": self.cfg.epochs, "steps_per_epoch": self.steps_per_epoch,
                     "total_steps": self.total_steps, "samples": len(self.splits["train"].rows) * self.cfg.epochs},
            versions=versions(), label_token_ids=self.label_ids)
        if self.unmatched:
            metrics.write("warning", kind="lora_unmatched",
                          message=f"LoRA targets {self.unmatched} match no layer of this model and train nothing")
        for note in self.optimizer_notes:
            metrics.write("warning", kind="paged_fallback", message=note)
        return metrics

    def _log(self, event: str, **fields) -> dict:
        """One metrics record; a disk failure becomes a DiskError naming the metrics file."""
        with writing(self.metrics.path or self.run_dir):
            return self.metrics.write(event, **fields)

    # --- train: top to bottom --------------------------------------------------------------------

    def train(self) -> dict:
        cfg, pos = self.cfg, self.pos
        train_rows = self.splits["train"].rows
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
                for batch_idx in batches[pos.epoch_step:]:
                    self._train_one(train_rows, batch_idx)
                    # every N steps, except an epoch's last step: the epoch checkpoint follows its eval
                    self._boundary(due=bool(cfg.checkpoint_every_steps) and pos.step % cfg.checkpoint_every_steps == 0
                                   and pos.epoch_step < len(batches))
                self._evaluate("validation", epoch=pos.epoch)
                pos.epoch, pos.epoch_step = pos.epoch + 1, 0
                self._checkpoint(f"epoch-{pos.epoch - 1}", "epoch")
                self._boundary()
        finally:
            self.view.stop()
        self.stop.mode = "noted"  # the test evaluation is the last piece: finish it
        return self._evaluate("test", epoch=cfg.epochs) if cfg.test_eval else {}

    def _here(self) -> tuple[int, int, int]:
        return self.pos.step, self.pos.epoch, self.pos.epoch_step

    def _boundary(self, due: bool = False) -> None:
        """A point where training can stop and resume exactly: checkpoint when `due` or a stop was
        asked for (unless the newest checkpoint is of this very point), then stop if asked. Under
        data parallelism the ranks agree first: a signal one rank saw stops them all here."""
        if self.world.any(self.stop.requested is not None) and self.stop.requested is None:
            self.stop.requested = "a stop request to another process of this run"
        if (due or self.stop.requested) and self._saved_at != self._here():
            self._checkpoint(f"step-{self.pos.step}", "interrupt" if self.stop.requested else "steps")
        if self.stop.requested:
            raise Interrupted(f"stopped by {self.stop.requested} at step {self.pos.step} (epoch {self.pos.epoch}); "
                              f"checkpoint {self.last_checkpoint}; continue with: python -m nli_qlora.train "
                              f"--resume {self.run_dir}")

    def _chunks(self, rows: list[Encoded]) -> list[list[Encoded]]:
        micro = max(1, -(-len(rows) // self.cfg.grad_accum))
        return [rows[i:i + micro] for i in range(0, len(rows), micro)]

    def _micro_batches(self, mine: list[Encoded]) -> list[dict]:
        return [collate(chunk, self.tokenizer.pad_token_id, self.cfg.pad_to_multiple, self.answer_ids,
                        pin=self.device.type == "cuda") for chunk in self._chunks(mine)]

    def _token_counts(self, chosen: list[Encoded]) -> tuple[int, int]:
        """Real and padded tokens of the whole global batch, as every rank's micro-batches hold them."""
        answer = self.answer_ids
        extra = (lambda r: len(answer[r.label])) if answer is not None else (lambda r: 0)
        groups = [[len(r.prompt_ids) + extra(r) for r in chunk]
                  for rank in range(self.world.size) for chunk in self._chunks(chosen[rank::self.world.size])]
        return token_counts(groups, self.cfg.pad_to_multiple)

    def _step(self, chosen: list[Encoded]) -> dict:
        """train_step on this rank's share of the batch; on CUDA out of memory nli_qlora.oom decides:
        retry with smaller micro-batches (--auto-batch) or stop with the settings that would fit."""
        mine = self.world.shard(chosen)
        while True:
            host = self._micro_batches(mine)
            try:
                return train_step(self.trainer, [to_device(b, self.device) for b in host], global_rows=len(chosen))
            except torch.OutOfMemoryError:
                pass  # handled below, outside the except block: its traceback holds the activations
            self._free_after_oom()
            self._apply(oom.train_oom(self.cfg, self.pos.step + 1, self.run_dir, self._gpu_total_gb()))

    def _free_after_oom(self) -> None:
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

    def _train_one(self, rows: list[Encoded], batch_idx: list[int]) -> None:
        cfg, pos = self.cfg, self.pos
        t0 = time.perf_counter()
        chosen = sorted((rows[i] for i in batch_idx), key=lambda r: len(r.prompt_ids))
        stats = self._step(chosen)
        cfg = self.cfg  # an out-of-memory retry may have changed the micro-batch
        dt = time.perf_counter() - t0  # honest: train_step ends on a host sync
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
            gpu_mem_allocated_gb=_gb(torch.cuda.memory_allocated()) if cuda else None,
            gpu_mem_reserved_gb=_gb(torch.cuda.memory_reserved()) if cuda else None,
            gpu_mem_peak_gb=_gb(torch.cuda.max_memory_allocated()) if cuda else None,
            rss_gb=rss_gb(), skipped=stats["skipped"], captured=stats["captured"])
        self.view.step(record)
        if pos.bad_steps_in_a_row >= cfg.max_bad_steps:
            raise UserError(f"{pos.bad_steps_in_a_row} non-finite losses in a row at step {pos.step} "
                            f"({pos.skipped_steps} steps skipped in all; --max-bad-steps {cfg.max_bad_steps}): "
                            f"{self._non_finite_cause()}")

    def _non_finite_cause(self) -> str:
        lr = f"the learning rate is likely too high: lower --learning-rate (now {self.cfg.learning_rate:g})"
        if self.dtype == torch.float16:
            return (f"float16 overflows (Phi-2's attention does): use --compute-dtype bfloat16, or float32 "
                    f"on a GPU without bfloat16; or {lr}")
        return lr

    def _evaluate(self, split: str, epoch: int) -> dict:
        s = self.splits[split]
        while True:
            try:
                result, logits = evaluate(self.trainer.scorer, s.rows, self.cfg.eval_batch_size,
                                          self.tokenizer.pad_token_id, self.cfg.pad_to_multiple, self.world)
                break
            except torch.OutOfMemoryError:
                pass  # handled outside the except block, as in _step
            self._free_after_oom()
            self._apply(oom.eval_oom(self.cfg, split, self.run_dir))
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
        with writing(self.run_dir / rel), open_atomic(self.run_dir / rel, "w", encoding="utf-8") as f:
            for r, p in zip(s.rows, probs):
                ex = s.examples[r.index]
                f.write(json.dumps({"line": ex.line, "id": ex.id, "premise": ex.premise, "hypothesis": ex.hypothesis,
                                    "gold": LABELS[ex.label], "predicted": LABELS[int(p.argmax())],
                                    "probabilities": dict(zip(LABELS, map(lambda v: round(float(v), 5), p)))}) + "\n")
        return rel

    def _checkpoint(self, name: str, kind: str, wait: bool = True) -> None:
        """Rank 0 writes; every rank records it, and (`wait`) all wait until it is on disk, so none
        goes on, or exits, while the checkpoint is half written."""
        path = self.run_dir / "checkpoints" / name
        if self.rank == 0:
            # the metrics file as it is now, without this checkpoint's own record: a resume from this
            # checkpoint cuts the file back to here and writes a `checkpoint` record of kind "restored"
            self.pos.metrics_offset = self.metrics.path.stat().st_size if self.metrics.path else 0
            with writing(path, "write checkpoint"):
                path = ckpt.save(path, self.model, self.cfg, self.trainer.optimizer, self.trainer.scheduler, self.pos)
            epoch = self.pos.epoch - 1 if kind == "epoch" else self.pos.epoch
            self._log("checkpoint", path=str(path), step=self.pos.step, epoch=epoch, kind=kind)
        if wait:
            self.world.barrier()
        self.last_checkpoint, self._saved_at = path, self._here()

    # --- the end ---------------------------------------------------------------------------------

    def finish(self, status: str, error: str | None = None, log: str | None = None) -> None:
        """The run_end record, once. Best effort after a failure: a full or read-only disk may refuse
        it, and the one-line error on the terminal has already said why."""
        if self.ended:
            return
        self.ended = True
        self.stop.mode = "noted"
        peak_gpu = _gb(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
        try:
            self._log("run_end", status=status, wall_s=round(time.time() - self.t_start, 3), error=error, log=log,
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
        self._close_metrics()
        self.stop.uninstall()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
