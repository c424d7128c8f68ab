"""The peer baseline: the published QLoRA recipe the usual way, through transformers.Trainer + PEFT +
bitsandbytes, measured and reported exactly like `python -m nli_qlora.train` so the two compare.

    python scripts/peer_trainer.py --preset tiny --output-dir runs/peer-tiny            (CPU, a minute)
    python scripts/peer_trainer.py --model random:phi-2 --train-file ... --output-dir runs/peer-phi2

The training path is the usual recipe and none of ours: a 4-bit NF4 double-quant base,
`prepare_model_for_kbit_training`, LoRA (r, alpha, dropout, targets from the preset: 32/64/0.05 on
the published list), `transformers.Trainer` with optim="paged_adamw_8bit", gradient checkpointing
(non-reentrant) unless --no-gradient-checkpointing, bf16 on a GPU, rows in random order (no
bucketing), loss = the causal-LM loss on the answer tokens only (label word + eos; the prompt is
masked with -100). Around it, ours, so the numbers mean the same: the same rows (nli_qlora.data:
read, prompt, batches.encode), the same model loading (nli_qlora.model.bundle), the same evaluation
(nli_qlora.training.evaluate: label-token scoring, zero-shot on
validation and test before training), the same metrics.jsonl events (docs/metrics.md) and the same
report.md/summary.json (nli_qlora.run.report). Settings come from a preset (default seed) and the same
flags as the train CLI; flags the peer cannot honour are refused."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import traceback
from collections import deque
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere: the package lives beside scripts/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from nli_qlora.config import PRESETS, OneLineParser, RunConfig, add_config_flags, resolve
from nli_qlora.data.batches import batch_token_counts, collate, encode
from nli_qlora.data.read import load_split
from nli_qlora.infra.errors import UserError
from nli_qlora.infra.machine import device_info, gb, peak_rss_gb, rss_gb, versions
from nli_qlora.infra.quiet import quiet_libraries
from nli_qlora.model.bundle import ModelBundle, load_bundle, with_lora
from nli_qlora.run.metrics import MetricsWriter
from nli_qlora.run.predictions import write_predictions
from nli_qlora.run.report import write_report
from nli_qlora.training.evaluate import evaluate
from nli_qlora.training.scoring import LabelScorer
from nli_qlora.training.step import synchronize

PROG = "scripts/peer_trainer.py"
PAD_MULTIPLE = 8  # the usual collator's pad_to_multiple_of
# settings of ours that have no meaning in the usual recipe: refused when given
NOT_HONOURED = ("loss", "bucketing", "step_mode", "pad_to_multiple", "checkpoint_every_steps", "max_bad_steps",
                "auto_batch", "attention_kernel")
OPTIM_NAMES = {"paged_adamw_8bit": "paged_adamw_8bit", "adamw_8bit": "adamw_bnb_8bit", "adamw": "adamw_torch"}
PEER = {"trainer": "transformers.Trainer", "adapter": "peft get_peft_model after prepare_model_for_kbit_training",
        "loss": "causal-LM cross-entropy on the answer tokens (label word + eos), prompt masked with -100",
        "order": "random (no length bucketing)", "pad_to_multiple": PAD_MULTIPLE}


# --- settings -----------------------------------------------------------------------------------

def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="The peer baseline: the published recipe through "
                                                  "transformers.Trainer, reported like nli_qlora.train.")
    parser.add_argument("--preset", choices=list(PRESETS), default=None, help="starting settings (default seed)")
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON settings over the preset")
    parser.add_argument("--max-steps", type=int, default=-1, metavar="N",
                        help="stop after N optimizer steps (for smoke tests and benchmarks; default: all epochs)")
    parser.add_argument("--quiet", action="store_true", help="no terminal output except errors")
    add_config_flags(parser)
    return parser


def resolve_peer(args) -> RunConfig:
    """The train CLI's resolution (preset -> --config -> flags), then the peer's own defaults."""
    given = [name for name in NOT_HONOURED if hasattr(args, name)]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')}: not part of the peer recipe (see {PROG} --help)")
    cfg = resolve(args)
    cfg.loss = "answer"  # nearest of ours: the answer tokens' full-vocabulary cross-entropy (see PEER)
    cfg.bucketing, cfg.step_mode, cfg.pad_to_multiple = False, "eager", PAD_MULTIPLE
    cfg.attention_kernel = "auto"  # torch's pick, as Trainer runs it; saved so, so that scoring the peer's run agrees
    if not hasattr(args, "gradient_checkpointing"):
        cfg.gradient_checkpointing = True  # the usual recipe's
    return cfg


# --- the model, the usual way -------------------------------------------------------------------

def load_peer(cfg: RunConfig, device: torch.device) -> ModelBundle:
    """4-bit base loaded as the loop loads it (model.bundle), prepare_model_for_kbit_training, then LoRA."""
    from peft import prepare_model_for_kbit_training

    quiet_libraries()
    bundle = load_bundle(cfg, device)
    if cfg.attn_implementation == "sdpa":
        bundle.model.set_attn_implementation("sdpa")  # the recipe's own attention (not nli_qlora.model.attention's)
    model = prepare_model_for_kbit_training(bundle.model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    return with_lora(dataclasses.replace(bundle, model=model))  # peft's get_peft_model with the recipe's LoraConfig


class AnswerCollator:
    """Right-padded rows with the answer appended; labels = the answer tokens, the prompt masked.

    Each batch's (rows, real tokens, tokens with padding) is queued: the Trainer's data loader reads
    ahead, but steps consume batches in order, so the step callback pops them first-in first-out."""

    def __init__(self, pad_id: int, answer_ids: list[list[int]], pad_multiple: int = PAD_MULTIPLE):
        self.pad_id, self.answer_ids, self.pad_multiple = pad_id, answer_ids, pad_multiple
        self.counts: deque[tuple[int, int, int]] = deque()

    def __call__(self, rows) -> dict:
        batch = collate(rows, self.pad_id, self.pad_multiple, self.answer_ids)
        labels = batch["lm_labels"].clone()
        for i, r in enumerate(rows):
            labels[i, :len(r.prompt_ids)] = -100
        self.counts.append((len(rows), *batch_token_counts(batch)))
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


def training_arguments(cfg: RunConfig, out_dir: Path, peer: ModelBundle, max_steps: int = -1):
    from transformers import TrainingArguments

    cuda = peer.device.type == "cuda"
    optim = OPTIM_NAMES[cfg.optimizer]
    if optim == "adamw_torch" and cuda:
        optim = "adamw_torch_fused"
    schedule = "constant_with_warmup" if cfg.lr_schedule == "constant" and cfg.warmup_steps else cfg.lr_schedule
    return TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=cfg.batch_size // cfg.grad_accum,
        gradient_accumulation_steps=cfg.grad_accum, num_train_epochs=cfg.epochs, max_steps=max_steps,
        learning_rate=cfg.learning_rate, lr_scheduler_type=schedule, warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, optim=optim,
        gradient_checkpointing=cfg.gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=cuda and peer.dtype == torch.bfloat16, fp16=cuda and peer.dtype == torch.float16,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", seed=cfg.seed,
        dataloader_num_workers=0, dataloader_pin_memory=cuda, remove_unused_columns=False, disable_tqdm=True,
        use_cpu=not cuda)


def make_trainer(peer: ModelBundle, cfg: RunConfig, train_rows, out_dir: Path, max_steps: int = -1, callbacks=()):
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback
    collator = AnswerCollator(peer.tokenizer.pad_token_id, peer.answer_ids)
    trainer = Trainer(model=peer.model, args=training_arguments(cfg, out_dir, peer, max_steps),
                      train_dataset=train_rows, data_collator=collator, callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)  # our step events say it all, once
    return trainer, collator


def step_timer_callback(device: torch.device):
    """A TrainerCallback that times every optimizer step, synchronized at both ends (`.times`)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._t0 = None

        def on_step_begin(self, args, state, control, **kw):
            synchronize(device)
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            synchronize(device)
            self.times.append(time.perf_counter() - self._t0)

    return StepTimer()


# --- the run: metrics events around Trainer.train() ---------------------------------------------

class PeerRun:
    """Writes the same events as nli_qlora.training.recipe.FineTune: run_start, step, eval, run_end."""

    def __init__(self, cfg: RunConfig, run_dir: Path, max_steps: int = -1, log=print):
        self.cfg, self.run_dir, self.max_steps, self.log = cfg, run_dir, max_steps, log
        self.metrics = None
        self.t_start = time.time()

    def setup(self) -> None:
        cfg = self.cfg
        self.device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        self.peer = load_peer(cfg, self.device)
        self.splits = {}
        for name, file, size in (("train", cfg.train_file, cfg.train_size),
                                 ("validation", cfg.validation_file, cfg.validation_size),
                                 ("test", cfg.test_file, cfg.test_size)):
            examples, stats = load_split(name, file, cfg.dataset, size, cfg.skip_bad_rows, cfg.label_set)
            rows, too_long = encode(examples, self.peer.tokenizer, cfg.prompt_template, cfg.max_length, stats.source,
                                    skip_long=cfg.skip_bad_rows)
            stats.bad_skipped += too_long
            stats.selected = len(rows)
            self.splits[name] = (examples, rows, stats)
        self.scorer = LabelScorer(self.peer.model, self.peer.label_ids, cfg.attention_kernel)
        self.timer = step_timer_callback(self.device)
        self.trainer, self.collator = make_trainer(self.peer, cfg, self.splits["train"][1], self.run_dir / "trainer",
                                                   self.max_steps, [self.timer, self._events_callback()])
        self.steps_per_epoch = math.ceil(len(self.splits["train"][1]) / cfg.batch_size)
        total = self.steps_per_epoch * cfg.epochs if self.max_steps < 0 else min(self.max_steps,
                                                                                  self.steps_per_epoch * cfg.epochs)
        self.epoch, self.epoch_step, self.step = 0, 0, 0
        self.metrics = MetricsWriter(self.run_dir / "metrics.jsonl")
        p = self.peer
        self.metrics.write(
            "run_start", run_name=self.run_dir.name, run_dir=str(self.run_dir), config=cfg.to_dict(),
            model={"name": cfg.model, "architecture": type(p.model.get_base_model()).__name__,
                   "dtype": str(p.dtype)[6:], "quantization": cfg.quantization},
            device=device_info(self.device), world_size=1, params=p.counts,
            lora_targets={"matched": p.matched, "unmatched": p.unmatched},
            data={name: s[2].as_dict() for name, s in self.splits.items()},
            planned={"epochs": cfg.epochs, "steps_per_epoch": self.steps_per_epoch, "total_steps": total,
                     "samples": min(total * cfg.batch_size, len(self.splits["train"][1]) * cfg.epochs)},
            versions=versions(), label_token_ids=p.label_ids, peer=PEER)
        if p.unmatched:
            self.metrics.write("warning", kind="lora_unmatched",
                               message=f"LoRA targets {p.unmatched} match no layer of this model and train nothing")
        self.log(f"peer: {cfg.model} on {device_info(self.device)['name']}; trainable {p.counts['trainable']:,} of "
                 f"{p.counts['total']:,}; {total} steps of {cfg.batch_size}")

    def _events_callback(self):
        from transformers import TrainerCallback
        run = self

        class Events(TrainerCallback):
            def on_epoch_begin(self, args, state, control, **kw):
                run.epoch += 1
                run.epoch_step = 0

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    run.on_step(logs)

            def on_epoch_end(self, args, state, control, **kw):
                run.evaluate("validation", run.epoch)

        return Events()

    def on_step(self, logs: dict) -> None:
        dt = self.timer.times[-1]
        samples = tokens = padded = 0
        for _ in range(self.cfg.grad_accum):
            if self.collator.counts:
                s, t, p = self.collator.counts.popleft()
                samples, tokens, padded = samples + s, tokens + t, padded + p
        self.step += 1
        self.epoch_step += 1
        cuda = self.device.type == "cuda"
        record = self.metrics.write(
            "step", step=self.step, epoch=self.epoch, epoch_step=self.epoch_step, steps_per_epoch=self.steps_per_epoch,
            loss=logs["loss"], lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"), samples=samples,
            tokens=tokens, padded_tokens=padded, padding_fraction=round(1 - tokens / padded, 4) if padded else None,
            step_time_s=round(dt, 6), samples_per_s=round(samples / dt, 3), tokens_per_s=round(tokens / dt, 1),
            gpu_mem_allocated_gb=gb(torch.cuda.memory_allocated()) if cuda else None,
            gpu_mem_reserved_gb=gb(torch.cuda.memory_reserved()) if cuda else None,
            gpu_mem_peak_gb=gb(torch.cuda.max_memory_allocated()) if cuda else None,
            rss_gb=rss_gb(), skipped=False, captured=False)
        if self.step == 1 or self.step % 25 == 0:
            self.log(f"step {record['step']} epoch {record['epoch']} loss {record['loss']:.4f} "
                     f"{record['samples_per_s']:.1f} samples/s")

    def evaluate(self, split: str, epoch: int) -> dict:
        examples, rows, _ = self.splits[split]
        bf16 = self.device.type == "cuda" and self.peer.dtype != torch.float32
        with torch.autocast(self.device.type, dtype=self.peer.dtype, enabled=bf16):  # as the Trainer computes
            result, logits = evaluate(self.scorer, rows, self.cfg.eval_batch_size, self.peer.tokenizer.pad_token_id,
                                      PAD_MULTIPLE, names=self.cfg.labels)
        pred_file = self._write_predictions(split, examples, rows, logits, epoch) if split == "test" else None
        record = self.metrics.write(
            "eval", split=split, step=self.step, epoch=epoch, loss=result["loss"], accuracy=result["accuracy"],
            balanced_accuracy=result["balanced_accuracy"], per_class_recall=result["per_class_recall"],
            confusion=result["confusion"], labels=result["labels"], rows=result["rows"],
            eval_time_s=result["eval_time_s"], predictions=pred_file)
        self.log(f"eval {split} epoch {epoch}: balanced accuracy {result['balanced_accuracy']:.4f}")
        return record

    def _write_predictions(self, split, examples, rows, logits, epoch: int) -> str:
        rel = f"predictions/{split}-epoch{epoch}.jsonl"
        probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        write_predictions(self.run_dir / rel, [examples[r.index] for r in rows], probs, self.cfg.labels)
        return rel

    def train(self) -> None:
        if self.cfg.zero_shot_eval:
            self.evaluate("validation", 0)
            if self.cfg.test_eval:
                self.evaluate("test", 0)
        self.trainer.train()
        if self.cfg.test_eval:
            self.evaluate("test", max(1, self.epoch))

    def finish(self, status: str, error: str | None = None, log: str | None = None) -> None:
        if self.metrics is None:
            return
        cuda = torch.cuda.is_available()
        self.metrics.write("run_end", status=status, wall_s=round(time.time() - self.t_start, 3), error=error, log=log,
                           gpu_mem_peak_gb=gb(torch.cuda.max_memory_allocated()) if cuda else None,
                           peak_rss_gb=peak_rss_gb(), skipped_steps=0)
        self.metrics.close()


def one_gpu_unless_torchrun() -> None:
    """transformers.Trainer wraps the model in torch.nn.DataParallel when it sees several GPUs and
    no torchrun; its replicas lose bitsandbytes' 4-bit quantization state ("quant_state is
    required"). The published recipe ran on one GPU: show the Trainer one, before CUDA starts."""
    if "WORLD_SIZE" not in os.environ and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = "0"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    one_gpu_unless_torchrun()
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    run = None
    try:
        cfg = resolve_peer(args)
        run_dir = Path(cfg.output_dir or f"runs/peer-{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
        if (run_dir / "metrics.jsonl").exists():
            raise UserError(f"--output-dir: {run_dir} already holds a run; choose another directory")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"--output-dir: cannot write to {run_dir}: {err.strerror}") from None
        cfg.output_dir = str(run_dir)
        cfg.save(run_dir / "config.json")
        run = PeerRun(cfg, run_dir, args.max_steps, log)
        run.setup()
        run.train()
        run.finish("completed")
        write_report(run_dir)
        log(f"report {run_dir / 'report.md'}")
        return 0
    except UserError as err:
        if run is not None:
            run.finish("failed", error=str(err))
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        if run is not None:
            run.finish("interrupted", error="interrupted")
        return 130
    except Exception as err:  # a bug: the traceback goes to the run directory
        path = None
        if run is not None:
            path = run.run_dir / "error.log"
            path.write_text(traceback.format_exc())
            run.finish("failed", error=f"{type(err).__name__}: {err}".splitlines()[0], log=str(path))
        print(f"{PROG}: internal error: {type(err).__name__}: {err}" + (f" (traceback in {path})" if path else ""),
              file=sys.stderr)
        if path is None:
            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
