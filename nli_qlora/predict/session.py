"""One run of the score command: resolve what scores, load it, stream the input through it, then
the metrics (--metrics-out, the terminal) and the exit status."""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

from nli_qlora.data.read import file_format
from nli_qlora.infra.atomic import open_atomic, write_text
from nli_qlora.infra.errors import UserError
from nli_qlora.infra.machine import process_start
from nli_qlora.infra.quiet import quiet_libraries
from nli_qlora.infra.storage import writing
from nli_qlora.predict.output import (check_paths, default_errors_path, open_errors, open_output, output_format,
                                      remove_stale_temps)
from nli_qlora.predict.stream import Tally, records_or_empty, score_stream, summary
from nli_qlora.predict.targets import compare_target, load, main_target
from nli_qlora.predict.view import RowProgress, note, report


def score_file(args, prog: str) -> int:
    """The score command's work for its parsed flags (cli.score): 0 done, 1 some rows failed."""
    out_fmt = output_format(args.output, args.output_format)
    in_fmt = file_format(args.input, args.input_format or (".jsonl" if args.input == "-" else None))
    errors_path = (Path(args.errors) if args.errors
                   else None if args.output == "-" else default_errors_path(args.output))
    check_paths({"--input": args.input}, {"--output": args.output, "--errors": errors_path and str(errors_path),
                                          "--metrics-out": args.metrics_out, "--compare-out": args.compare_out})
    main = main_target(args)
    compare = compare_target(args.compare, main, args) if args.compare else None
    records = records_or_empty(args.input, in_fmt)
    for path in (args.output, errors_path, args.metrics_out, args.compare_out):
        for stale in remove_stale_temps(path and str(path)):
            note(args, f"removed {stale}, left by an interrupted scorer")

    quiet_libraries()
    models = [load(main)] + ([load(compare)] if compare else [])
    for m in models:
        note(args, f"{'compare' if m is not models[0] else 'scoring'} with {m.target.name} (base {m.cfg.model}, "
                   f"{'fine-tuned' if m.target.checkpoint else 'zero-shot'}, label words {list(m.cfg.label_words)})")

    names = main.cfg.labels
    if compare and compare.cfg.labels != names:
        raise UserError(f"--compare: {compare.name} has the labels {' '.join(compare.cfg.labels)}, not "
                        f"{' '.join(names)}: only models of one label set compare")
    tally = Tally(names)
    source = "stdin" if args.input == "-" else args.input
    started = process_start()  # a user timing the command counts the interpreter, imports and loads too
    before_rows = time.time() - started
    t0 = time.perf_counter()
    with writing(args.output if args.output != "-" else "the score outputs"), ExitStack() as stack:
        out = stack.enter_context(open_output(args.output, out_fmt, names))
        errors = stack.enter_context(open_errors(errors_path, source, prog))
        compare_out = stack.enter_context(_open_text(args.compare_out))
        progress = stack.enter_context(RowProgress(enabled=not args.quiet))
        score_stream(models, records, args.chunk_rows, out, errors, compare_out, tally, progress)
    seconds = time.perf_counter() - t0

    metrics = summary(tally.confusion, names)
    result = dict(metrics, input=source, output=args.output, model=main.cfg.model,
                  checkpoint=str(main.checkpoint) if main.checkpoint else None, rows_in=tally.rows_in,
                  rows_scored=tally.scored, rows_failed=errors.rows, rows_without_gold=tally.unlabelled,
                  seconds=round(seconds, 3), rows_per_s=round(tally.scored / max(seconds, 1e-9), 1),
                  before_rows_s=round(before_rows, 3), process_s=round(time.time() - started, 3))
    if compare:
        result["compare"] = dict(summary(tally.compare_confusion, names), name=compare.name, model=compare.cfg.model,
                                 checkpoint=str(compare.checkpoint) if compare.checkpoint else None,
                                 cases=dict(tally.cases))
    if args.metrics_out:
        with writing(args.metrics_out):
            write_text(args.metrics_out, json.dumps(result, indent=2) + "\n")
    report(args, result)
    if errors.rows:
        where = errors_path if errors_path is not None else "stderr above"
        print(f"{prog}: {errors.rows} of {tally.rows_in} rows could not be scored (first: line {errors.first.line}: "
              f"{errors.first.reason}; all in {where}); {tally.scored} scored", file=sys.stderr)
        return 0 if args.skip_bad_rows else 1
    return 0


def _open_text(path: str | None):
    return open_atomic(path, "w", encoding="utf-8") if path else nullcontext()
