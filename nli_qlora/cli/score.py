"""python -m nli_qlora.score: score a file of premise/hypothesis pairs with a fine-tuned adapter or a
pretrained model, through the same label-token scorer the training loop evaluates with.

    python -m nli_qlora.score --checkpoint RUN_DIR/checkpoints/epoch-5 --input pairs.jsonl --output preds.jsonl
    cat pairs.jsonl | python -m nli_qlora.score --checkpoint RUN_DIR --input - > preds.jsonl

The input streams in chunks (read, tokenize, score sorted by length, write in input order), so
memory stays bounded on any file size. Every input row becomes exactly one output row or one error
row. Exit status: 0 done, 1 some rows could not be scored (0 with --skip-bad-rows), 2 a user error
(one line), 130 interrupted (no file output written), 141 stdout closed early. See docs/scoring.md."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys

from nli_qlora.config import PRESETS, OneLineParser, RunConfig
from nli_qlora.infra.errors import UserError
from nli_qlora.predict.session import score_file
from nli_qlora.predict.targets import PROMPT_SETTINGS, given

PROG = "python -m nli_qlora.score"
CHUNK_ROWS = 4096


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
    _config_flag(what, "label_words", nargs="+", metavar="WORD")
    _config_flag(what, "labels", nargs="+", metavar="NAME")
    _config_flag(what, "label_map", nargs="+", metavar="TEXT=NAME")
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
    _config_flag(run, "dequantize_base", action=argparse.BooleanOptionalAction)
    _config_flag(run, "lora_compute_dtype")
    _config_flag(run, "fused_lora", action=argparse.BooleanOptionalAction)
    _config_flag(run, "fused_projections", action=argparse.BooleanOptionalAction)
    _config_flag(run, "fused_norm", action=argparse.BooleanOptionalAction)
    _config_flag(run, "fused_rope", action=argparse.BooleanOptionalAction)
    _config_flag(run, "attention_kernel")
    run.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, metavar="N",
                     help=f"rows read, scored and written at a time; bounds memory (default {CHUNK_ROWS})")
    run.add_argument("--quiet", action="store_true", help="no progress, tables or notes; errors still print")
    return p


def check_args(args) -> None:
    """Flag combinations that make no sense, caught before anything slow happens."""
    if not (args.checkpoint or args.model or args.preset):
        raise UserError("give --checkpoint PATH (a fine-tuned adapter) or --model ID_OR_PATH (zero-shot)")
    if args.checkpoint:
        for name, value in [("preset", args.preset), *given(args, PROMPT_SETTINGS).items()]:
            if value is not None:
                raise UserError(f"--{name.replace('_', '-')}: a checkpoint carries its own; drop it or use --model")
    if args.compare_out and not args.compare:
        raise UserError("--compare-out needs --compare CHECKPOINT_OR_MODEL")
    for flag, value in (("--chunk-rows", args.chunk_rows), ("--batch-size", args.eval_batch_size)):
        if value is not None and value < 1:
            raise UserError(f"{flag}: must be at least 1, got {value}")


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (`timeout`) or SIGHUP (a closed terminal) cleans up like Ctrl-C


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _on_stop_signals(handlers) -> dict | None:
    try:
        return {sig: signal.signal(sig, handlers[sig] if isinstance(handlers, dict) else handlers)
                for sig in STOP_SIGNALS}
    except ValueError:  # not the main thread: leave signals alone
        return None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    previous = _on_stop_signals(_terminate)
    try:
        check_args(args)
        return score_file(args, PROG)
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
            _on_stop_signals(previous)
