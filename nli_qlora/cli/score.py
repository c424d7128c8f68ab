"""python -m nli_qlora.score: score a file of premise/hypothesis pairs with a fine-tuned adapter or a
pretrained model, through the same label-token scorer the training loop evaluates with.

    python -m nli_qlora.score --checkpoint RUN_DIR/checkpoints/epoch-5 --input pairs.jsonl --output preds.jsonl
    cat pairs.jsonl | python -m nli_qlora.score --checkpoint RUN_DIR --input - > preds.jsonl

The input streams in chunks (read, tokenize, score sorted by length, write in input order), so
memory stays bounded on any file size. Every input row becomes exactly one output row or one error
row. Exit status: 0 done, 1 some rows could not be scored (0 with --skip-bad-rows), 2 a user error
(one line), 130 interrupted (no file output written), 141 stdout closed early. See docs/scoring.md."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from nli_qlora.run import checkpoint as ckpt
from nli_qlora.config import LABELS, PRESETS, OneLineParser, RunConfig, preset
from nli_qlora.data.read import BadRow, Example, file_format, iter_records, parse_record
from nli_qlora.infra.errors import UserError

PROG = "python -m nli_qlora.score"
CHUNK_ROWS = 4096
# settings that change how a model runs, not what it answers: these may override a checkpoint's own
RUN_SETTINGS = ("max_length", "eval_batch_size", "quantization", "compute_dtype")
# settings that define the classifier: a checkpoint carries them, only a zero-shot model takes them
PROMPT_SETTINGS = ("prompt_template", "label_words", "tokenizer")


# --- the command line ----------------------------------------------------------------------------

def _config_flag(group, name: str, flag: str | None = None, **kw) -> None:
    """A flag for one RunConfig field, its help and choices taken from the dataclass."""
    f = next(f for f in dataclasses.fields(RunConfig) if f.name == name)
    if "choices" in f.metadata:
        kw["choices"] = f.metadata["choices"]
    group.add_argument(flag or "--" + name.replace("_", "-"), dest=name, default=None, help=f.metadata["help"], **kw)


def build_parser() -> OneLineParser:
    p = OneLineParser(prog=PROG, description="Score NLI pairs with a fine-tuned checkpoint or a pretrained model "
                                             "(the training loop's label-token scorer).")
    what = p.add_argument_group("what scores")
    what.add_argument("--checkpoint", metavar="PATH", help="checkpoint directory, or a run directory (its latest "
                      "complete checkpoint); it carries its base model, prompt and label words")
    what.add_argument("--model", metavar="ID_OR_PATH", help="without --checkpoint: score this pretrained model "
                      "zero-shot; with it: load the base model from here instead of the checkpoint's")
    what.add_argument("--preset", choices=list(PRESETS), default=None,
                      help="zero-shot only: prompt, label words and model settings to start from (default seed)")
    _config_flag(what, "prompt_template", metavar="TEXT")
    _config_flag(what, "label_words", nargs=3, metavar="WORD")
    _config_flag(what, "tokenizer", metavar="ID_OR_PATH")
    io = p.add_argument_group("input and output")
    io.add_argument("--input", required=True, metavar="FILE", help="rows to score (.jsonl .json .csv .tsv .parquet; "
                    "- = stdin, JSONL unless --input-format)")
    io.add_argument("--output", default="-", metavar="FILE", help="predictions (.jsonl .csv .tsv; - = stdout, "
                    "the default, JSONL unless --output-format)")
    io.add_argument("--input-format", choices=("jsonl", "json", "csv", "tsv", "parquet"), default=None)
    io.add_argument("--output-format", choices=("jsonl", "csv", "tsv"), default=None)
    io.add_argument("--errors", metavar="FILE", help="rows that could not be scored, as JSONL {line, reason} "
                    "(default OUTPUT.errors.jsonl next to the output; stderr lines when the output is stdout)")
    io.add_argument("--skip-bad-rows", action="store_true", help="exit 0 even when some rows could not be scored")
    io.add_argument("--metrics-out", metavar="FILE", help="write the metrics over rows with gold labels as JSON")
    io.add_argument("--compare", metavar="CHECKPOINT_OR_MODEL", help="also score with this model (the 'before') "
                    "and count the rows the main model corrected, did not correct, or regressed")
    io.add_argument("--compare-out", metavar="FILE", help="with --compare: those rows as JSONL with a category field")
    run = p.add_argument_group("how it runs")
    _config_flag(run, "eval_batch_size", "--batch-size", type=int, metavar="N")
    _config_flag(run, "max_length", type=int, metavar="N")
    _config_flag(run, "quantization")
    _config_flag(run, "compute_dtype")
    run.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, metavar="N",
                     help=f"rows read, scored and written at a time; bounds memory (default {CHUNK_ROWS})")
    run.add_argument("--quiet", action="store_true", help="no progress, tables or notes; errors still print")
    return p


def _given(args, names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def check_args(args) -> None:
    """Flag combinations that make no sense, caught before anything slow happens."""
    if not (args.checkpoint or args.model or args.preset):
        raise UserError("give --checkpoint PATH (a fine-tuned adapter) or --model ID_OR_PATH (zero-shot)")
    if args.checkpoint:
        for name, value in [("preset", args.preset), *_given(args, PROMPT_SETTINGS).items()]:
            if value is not None:
                raise UserError(f"--{name.replace('_', '-')}: a checkpoint carries its own; drop it or use --model")
    if args.compare_out and not args.compare:
        raise UserError("--compare-out needs --compare CHECKPOINT_OR_MODEL")
    for flag, value in (("--chunk-rows", args.chunk_rows), ("--batch-size", args.eval_batch_size)):
        if value is not None and value < 1:
            raise UserError(f"{flag}: must be at least 1, got {value}")


# --- what to load: a checkpoint's config, or a preset for a pretrained model -------------------

def find_checkpoint(path: str, flag: str = "--checkpoint") -> Path:
    """A checkpoint directory; a run directory gives its latest complete checkpoint."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{flag}: no such checkpoint {p}")
    if (p / "checkpoints").is_dir() or (p / "metrics.jsonl").is_file():
        latest = ckpt.latest(p)
        if latest is None:
            raise UserError(f"{flag}: run directory {p} has no complete checkpoint yet")
        return latest
    for name in ("config.json", "adapter_config.json", "adapter_model.safetensors"):
        if not (p / name).is_file():
            raise UserError(f"{flag}: {p} has no {name} (not a checkpoint of this toolkit?)")
    return p


def is_checkpoint_path(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / n).exists() for n in ("checkpoints", "metrics.jsonl", "adapter_config.json"))


@dataclass
class Target:
    """One thing to score with: its settings and, for a fine-tuned one, the adapter directory."""
    name: str  # as the user named it
    cfg: RunConfig
    checkpoint: Path | None
    flag: str


def main_target(args) -> Target:
    run = _given(args, RUN_SETTINGS)
    if args.checkpoint:
        path = find_checkpoint(args.checkpoint)
        cfg = ckpt.config_of(path)
        changes = dict(run, **({"model": args.model, "revision": None} if args.model else {}))
        return Target(str(path), dataclasses.replace(cfg, **changes).validate(), path, "--checkpoint")
    cfg = preset(args.preset or "seed")
    changes = dict(run, **_given(args, PROMPT_SETTINGS), **({"model": args.model} if args.model else {}))
    return Target(args.model or cfg.model, dataclasses.replace(cfg, **changes).validate(), None, "--model")


def compare_target(spec: str, main: Target, args) -> Target:
    """A checkpoint uses its own settings; a model is scored zero-shot with the main prompt and label words."""
    run = _given(args, RUN_SETTINGS)
    if is_checkpoint_path(spec):
        path = find_checkpoint(spec, "--compare")
        return Target(str(path), dataclasses.replace(ckpt.config_of(path), **run).validate(), path, "--compare")
    same = spec == main.cfg.model
    cfg = dataclasses.replace(main.cfg, model=spec, tokenizer=main.cfg.tokenizer if same else None,
                              revision=main.cfg.revision if same else None)
    return Target(spec, cfg.validate(), None, "--compare")


# --- loading: the same pieces the training loop builds ------------------------------------------

@dataclass
class Loaded:
    target: Target
    tokenizer: object
    label_ids: list[int]
    scorer: object  # LabelScorer

    @property
    def cfg(self) -> RunConfig:
        return self.target.cfg


def device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def load(target: Target, dev: torch.device | None = None) -> Loaded:
    """Tokenizer, label tokens, 4-bit base model and (for a checkpoint) its adapter, ready to score."""
    from nli_qlora.model.load import compute_dtype, load_base_model, load_tokenizer, resolve_source, tokenizer_source
    from nli_qlora.data.prompt import label_token_ids
    from nli_qlora.training.scoring import LabelScorer

    dev = dev or device()
    cfg = target.cfg
    source = resolve_source(cfg)
    tokenizer = load_tokenizer(tokenizer_source(cfg, source))
    label_ids = label_token_ids(tokenizer, cfg.label_words)
    model = load_base_model(cfg, source, dev, compute_dtype(cfg, dev), trains=False)  # scoring never trains
    if target.checkpoint is not None:
        model = load_adapter(model, target)
    model.eval()
    return Loaded(target, tokenizer, label_ids, LabelScorer(model, label_ids))


def load_adapter(base, target: Target):
    """PeftModel.from_pretrained, then a check that every saved adapter tensor found its layer and
    every adapter layer got its tensor (peft only warns, or says nothing, when they do not)."""
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open

    path = target.checkpoint

    def unfit(why: str) -> UserError:
        return UserError(f"{target.flag}: the adapter in {path} does not fit base model {target.cfg.model}: {why}")

    try:
        with safe_open(str(path / "adapter_model.safetensors"), "pt") as f:
            saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # safetensors' own error type: a truncated or foreign file
        raise UserError(f"{target.flag}: {path / 'adapter_model.safetensors'} is damaged: "
                        f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    try:
        model = PeftModel.from_pretrained(base, str(path), is_trainable=False)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:  # peft: size mismatch, no target module, ...
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        why = next((line for line in lines if "mismatch" in line), lines[0] if lines else type(err).__name__)
        raise unfit(why) from None
    have = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model, save_embedding_layers=False).items()}
    if set(saved) - set(have):
        raise unfit(f"no layer for {sorted(set(saved) - set(have))[0]}")
    if set(have) - set(saved):
        raise unfit(f"no weights for {sorted(set(have) - set(saved))[0]}")
    bad = next((k for k in saved if saved[k] != have[k]), None)
    if bad:
        raise unfit(f"{bad} is {saved[bad]} in the file, {have[bad]} in the model")
    return model


# --- scoring a chunk: encode, predict (THE scorer), softmax --------------------------------------

def encode_for(m: Loaded, examples: list[Example]) -> tuple[dict, dict[int, str]]:
    """(Encoded rows by example index, too-long reasons by example index) under this model's prompt."""
    from nli_qlora.data.batches import encode
    from nli_qlora.data.prompt import format_prompt

    rows, _ = encode(examples, m.tokenizer, m.cfg.prompt_template, m.cfg.max_length, m.target.name, skip_long=True)
    kept = {r.index: r for r in rows}
    too_long = {}
    for i, ex in enumerate(examples):
        if i not in kept:
            n = len(m.tokenizer(format_prompt(m.cfg.prompt_template, ex.premise, ex.hypothesis))["input_ids"])
            too_long[i] = f"prompt is {n} tokens, over --max-length {m.cfg.max_length}"
    return kept, too_long


def score_examples(models: list[Loaded], examples: list[Example],
                   progress: Callable[[int], None] | None = None) -> tuple[list[int], list[np.ndarray], dict[int, str]]:
    """(indices scored, probabilities [len(scored), 3] per model, reasons for the rest).

    A row too long for any of the models is an error row for all, so every model scores the same rows."""
    from nli_qlora.training.evaluate import predict

    encoded = [encode_for(m, examples) for m in models]
    errors: dict[int, str] = {}
    for k, (_, too_long) in enumerate(encoded):
        for i, reason in too_long.items():
            errors.setdefault(i, reason if k == 0 else f"{reason} of the --compare model")
    good = [i for i in range(len(examples)) if i not in errors]
    probs = []
    for k, (m, (kept, _)) in enumerate(zip(models, encoded)):
        logits = predict(m.scorer, [kept[i] for i in good], m.cfg.eval_batch_size, m.tokenizer.pad_token_id,
                         m.cfg.pad_to_multiple, progress=progress if k == 0 else None)
        probs.append(torch.softmax(torch.from_numpy(logits), dim=1).numpy())
    return good, probs, errors


# --- streaming ------------------------------------------------------------------------------------

def chunked(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def parse(line: int, record) -> Example | BadRow:
    if isinstance(record, BadRow):
        return record
    parsed = parse_record(record, line)
    return parsed[1] if isinstance(parsed, tuple) else parsed  # (UNLABELED, example): scored, no gold


def records_or_empty(path: str, fmt: str | None) -> Iterator[tuple[int, object]]:
    """The input's records; reading the first one now turns a missing or empty input into one clear line
    before any model loads."""
    records = iter_records(path, fmt)
    first = next(records, None)
    if first is None:
        raise UserError(f"--input: {'stdin' if path == '-' else path} has no rows")
    return chain([first], records)


@dataclass
class Tally:
    rows_in: int = 0
    scored: int = 0
    unlabelled: int = 0
    confusion: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((3, 3), dtype=np.int64))
    compare_confusion: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((3, 3), dtype=np.int64))
    cases: dict = dataclasses.field(default_factory=lambda: {"corrected": 0, "not_corrected": 0, "regressed": 0,
                                                              "both_right": 0})


def summary(confusion: np.ndarray) -> dict:
    """classification.summarize over the rows a confusion matrix counts (kept instead of every row)."""
    from nli_qlora.training.classification import summarize
    cells = confusion.reshape(-1)
    return summarize(np.repeat(np.repeat(np.arange(3), 3), cells), np.repeat(np.tile(np.arange(3), 3), cells))


def score_stream(models: list[Loaded], records, chunk_rows: int, out, errors, compare_out, tally: Tally,
                 progress: Callable[[int], None] | None = None) -> None:
    """Read a chunk, score it, write its rows in input order; repeat. Nothing outlives a chunk but counts."""
    from nli_qlora.run.report import failure_cases
    from nli_qlora.predict.output import prediction_row

    for chunk in chunked(records, chunk_rows):
        items = [parse(line, record) for line, record in chunk]
        examples = [it for it in items if isinstance(it, Example)]
        good, probs, too_long = score_examples(models, examples, progress)
        at = {i: k for k, i in enumerate(good)}
        after, before = [], []
        i = -1
        for item in items:
            tally.rows_in += 1
            if isinstance(item, BadRow):
                errors.write(item)
                continue
            i += 1
            if i in too_long:
                errors.write(BadRow(item.line, too_long[i]))
                continue
            row = prediction_row(item, probs[0][at[i]])
            out.write(row)
            tally.scored += 1
            if item.label is None:
                tally.unlabelled += 1
                continue
            tally.confusion[item.label, LABELS.index(row["predicted"])] += 1
            if len(models) > 1:
                prev = prediction_row(item, probs[1][at[i]])
                tally.compare_confusion[item.label, LABELS.index(prev["predicted"])] += 1
                after.append(row)
                before.append(prev)
        out.flush()
        if len(models) > 1:
            _write_cases(failure_cases(before, after), after, tally, compare_out)


def _write_cases(cases: dict, after: list[dict], tally: Tally, sink) -> None:
    """Count each category and write its rows in input order, each with its category and id."""
    by_line = {}
    for category, rows in cases.items():
        tally.cases[category] += len(rows)
        by_line.update({r["line"]: dict(r, category=category) for r in rows})
    tally.cases["both_right"] += len(after) - len(by_line)
    if sink is None:
        return
    for row in after:
        if row["line"] in by_line:
            sink.write(json.dumps({"category": by_line[row["line"]]["category"], "id": row["id"],
                                   **{k: v for k, v in by_line[row["line"]].items() if k != "category"}},
                                  ensure_ascii=False) + "\n")


# --- the terminal ---------------------------------------------------------------------------------

class RowProgress:
    """A rich progress line with rows/s on a terminal; nothing when stderr is piped or --quiet."""

    def __init__(self, enabled: bool):
        from rich.console import Console
        self.console = Console(stderr=True, highlight=False)
        self.live = enabled and self.console.is_terminal
        self._progress = None
        self._start = time.perf_counter()
        self.done = 0

    def __enter__(self) -> "RowProgress":
        if self.live:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            self._progress = Progress(SpinnerColumn(), TextColumn("scored {task.completed:,} rows"),
                                      TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(),
                                      console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("score", total=None, rate="-")
        self._start = time.perf_counter()
        return self

    def __call__(self, n: int) -> None:
        self.done += n
        if self._progress is not None:
            rate = self.done / max(1e-9, time.perf_counter() - self._start)
            self._progress.update(self._task, completed=self.done, rate=f"{rate:,.0f}")

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


def note(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


# --- the command ----------------------------------------------------------------------------------

def run(args) -> int:
    from nli_qlora.predict.output import default_errors_path, open_errors, open_output, output_format

    check_args(args)
    out_fmt = output_format(args.output, args.output_format)
    in_fmt = file_format(args.input, args.input_format or (".jsonl" if args.input == "-" else None))
    errors_path = (Path(args.errors) if args.errors
                   else None if args.output == "-" else default_errors_path(args.output))
    main = main_target(args)
    compare = compare_target(args.compare, main, args) if args.compare else None
    records = records_or_empty(args.input, in_fmt)

    from nli_qlora.training.recipe import quiet_libraries
    quiet_libraries()
    models = [load(main)] + ([load(compare)] if compare else [])
    for m in models:
        note(args, f"{'compare' if m is not models[0] else 'scoring'} with {m.target.name} (base {m.cfg.model}, "
                   f"{'fine-tuned' if m.target.checkpoint else 'zero-shot'}, label words {list(m.cfg.label_words)})")

    tally = Tally()
    source = "stdin" if args.input == "-" else args.input
    t0 = time.perf_counter()
    with ExitStack() as stack:
        out = stack.enter_context(open_output(args.output, out_fmt))
        errors = stack.enter_context(open_errors(errors_path, source, PROG))
        compare_out = stack.enter_context(_open_text(args.compare_out))
        progress = stack.enter_context(RowProgress(enabled=not args.quiet))
        score_stream(models, records, args.chunk_rows, out, errors, compare_out, tally, progress)
    seconds = time.perf_counter() - t0

    metrics = summary(tally.confusion)
    result = dict(metrics, input=source, output=args.output, model=main.cfg.model,
                  checkpoint=str(main.checkpoint) if main.checkpoint else None, rows_in=tally.rows_in,
                  rows_scored=tally.scored, rows_failed=errors.rows, rows_without_gold=tally.unlabelled,
                  seconds=round(seconds, 3), rows_per_s=round(tally.scored / max(seconds, 1e-9), 1))
    if compare:
        result["compare"] = dict(summary(tally.compare_confusion), name=compare.name, model=compare.cfg.model,
                                 checkpoint=str(compare.checkpoint) if compare.checkpoint else None,
                                 cases=dict(tally.cases))
    if args.metrics_out:
        from nli_qlora.infra.atomic import write_text
        write_text(args.metrics_out, json.dumps(result, indent=2) + "\n")
    _report(args, result)
    if errors.rows:
        where = errors_path if errors_path is not None else "stderr above"
        print(f"{PROG}: {errors.rows} of {tally.rows_in} rows could not be scored (first: line {errors.first.line}: "
              f"{errors.first.reason}; all in {where}); {tally.scored} scored", file=sys.stderr)
        return 0 if args.skip_bad_rows else 1
    return 0


def _open_text(path: str | None):
    from nli_qlora.infra.atomic import open_atomic
    return open_atomic(path, "w", encoding="utf-8") if path else nullcontext()


def _report(args, result: dict) -> None:
    """The human view: metrics tables (stdout, or stderr when stdout carries the rows) and counts."""
    if args.quiet:
        return
    from rich.console import Console

    from nli_qlora.predict.output import metrics_tables, pct
    console = Console(stderr=args.output == "-", highlight=False)
    if result["rows"]:
        for table in metrics_tables(result, result["checkpoint"] or result["model"]):
            console.print(table)
        if "compare" in result:
            c = result["compare"]
            console.print(f"compare: balanced accuracy {pct(c['balanced_accuracy'])} before ({c['name']}) -> "
                          f"{pct(result['balanced_accuracy'])} after; corrected {c['cases']['corrected']}, "
                          f"not corrected {c['cases']['not_corrected']}, regressed {c['cases']['regressed']}, "
                          f"both right {c['cases']['both_right']}", markup=False)
    elif "compare" in result:
        console.print("compare: no rows with gold labels to compare", markup=False)
    note(args, f"scored {result['rows_scored']} of {result['rows_in']} rows in {result['seconds']:.1f} s "
               f"({result['rows_per_s']:,.0f} rows/s) -> {'stdout' if args.output == '-' else args.output}")


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (e.g. from `timeout`) cleans up like Ctrl-C: no half output file


def _on_sigterm(handler):
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    previous = _on_sigterm(_terminate)
    try:
        return run(args)
    except UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted" + ("" if args.output == "-" else f"; {args.output} not written"), file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (e.g. `| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        if previous is not None:
            _on_sigterm(previous)


if __name__ == "__main__":
    sys.exit(main())
