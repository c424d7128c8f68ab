"""Every bad input of docs/reliability.md's table, made on the spot, and what each command does with it.

    python scripts/hostile_inputs.py DIR           write the inputs (and a tiny trained run) into DIR
    python scripts/hostile_inputs.py DIR --run     ... then run every case and print the table

Each case is a command a user could type, the exit status it must give and a phrase its output
must hold; tests/test_hostile_inputs.py runs the same CASES, so the table and the tests agree."""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]
ROWS = [("A man plays a guitar on stage.", "A man is performing music.", 0),
        ("Two dogs run through a field.", "The dogs are sleeping.", 2),
        ('"Lotos, said the sign above the cyclists.', "A sign is above the cyclists.", 0),
        ("A child reads a book in the park.", "The child is at school.", 2),
        ("A woman cooks dinner.", "Someone is cooking.", 0),
        ("People wait for a bus.", "The bus is late.", 1),
        ("A cat sits on a \"warm\" windowsill.", "An animal is resting.", 0),
        ("A chef slices onions.", "The chef is crying.", 1)]
TRAIN, SCORE = [sys.executable, "-m", "nli_qlora.train"], [sys.executable, "-m", "nli_qlora.score"]


@dataclass(frozen=True)
class Case:
    name: str
    fault: str
    argv: tuple[str, ...]  # {d} is the inputs folder
    exit: int
    says: str  # a phrase of stderr (or the file named by `in_file`)
    in_file: str | None = None


CASES = [
    Case("tsv-open-quote", "a TSV field starts with an unmatched quote (8 rows)", (*SCORE, "--checkpoint", "{d}/run",
         "--input", "{d}/quote.tsv", "--output", "{d}/out-tsv.jsonl", "--metrics-out", "{d}/m-tsv.json"), 0,
         '"rows_scored": 8', "m-tsv.json"),
    Case("csv-open-quote", "a CSV field starts with an unmatched quote", (*SCORE, "--checkpoint", "{d}/run",
         "--input", "{d}/quote.csv", "--output", "{d}/out-csv.jsonl"), 1, "were read as one row"),
    Case("garbage-adapter", "adapter values replaced by 3e38 (same size)", (*SCORE, "--checkpoint",
         "{d}/ckpt-garbage", "--input", "{d}/rows.jsonl"), 2, "does not match the checksum"),
    Case("garbage-adapter-old", "the same, in a checkpoint without checksums", (*SCORE, "--checkpoint",
         "{d}/ckpt-garbage-nosums", "--input", "{d}/rows.jsonl"), 2, "non-finite label logits"),
    Case("nan-adapter", "an adapter holding NaN", (*SCORE, "--checkpoint", "{d}/ckpt-nan",
         "--input", "{d}/rows.jsonl"), 2, "non-finite values"),
    Case("resume-garbage", "resume from the garbage checkpoint", (*TRAIN, "--resume", "{d}/run-garbage"), 2,
         "does not match the checksum"),
    Case("all-too-long", "every training row over --max-length, --skip-bad-rows", (*TRAIN, "--preset", "tiny",
         "--max-length", "3", "--skip-bad-rows", "--output-dir", "{d}/too-long"), 2, "no train rows left"),
    Case("all-too-long-dry", "the same, dry run", (*TRAIN, "--preset", "tiny", "--max-length", "3",
         "--skip-bad-rows", "--dry-run"), 2, "no train rows left"),
    Case("output-is-input", "--output equal to --input", (*SCORE, "--checkpoint", "{d}/run", "--input",
         "{d}/rows.jsonl", "--output", "{d}/rows.jsonl"), 2, "name the same file"),
    Case("metrics-is-output", "--metrics-out equal to --output", (*SCORE, "--checkpoint", "{d}/run", "--input",
         "{d}/rows.jsonl", "--output", "{d}/o.jsonl", "--metrics-out", "{d}/o.jsonl"), 2, "name the same file"),
    Case("errors-is-output", "--errors equal to --output", (*SCORE, "--checkpoint", "{d}/run", "--input",
         "{d}/rows.jsonl", "--output", "{d}/o.jsonl", "--errors", "{d}/o.jsonl"), 2, "name the same file"),
    Case("output-is-dir", "--output is a directory", (*SCORE, "--checkpoint", "{d}/run", "--input",
         "{d}/rows.jsonl", "--output", "{d}/folder.jsonl"), 2, "is a directory"),
    Case("output-dir-is-file", "--output-dir is an existing file", (*TRAIN, "--preset", "tiny", "--output-dir",
         "{d}/a-file"), 2, "is a file, not a directory"),
    Case("weight-decay-nan", "--weight-decay nan", (*TRAIN, "--preset", "tiny", "--weight-decay", "nan",
         "--dry-run"), 2, "--weight-decay: must be a finite number"),
    Case("grad-norm-nan", "--max-grad-norm nan", (*TRAIN, "--preset", "tiny", "--max-grad-norm", "nan",
         "--dry-run"), 2, "--max-grad-norm: must be a finite number"),
    Case("lr-inf", "--learning-rate inf", (*TRAIN, "--preset", "tiny", "--learning-rate", "inf", "--dry-run"), 2,
         "--learning-rate: must be a finite number"),
    Case("train-size-too-big", "--train-size larger than the data", (*TRAIN, "--preset", "tiny", "--train-size",
         "5000", "--dry-run"), 0, "using all 1,200"),
    Case("gzip-as-jsonl", "a gzip file named .jsonl", (*SCORE, "--checkpoint", "{d}/run", "--input",
         "{d}/compressed.jsonl"), 2, "gzip-compressed"),
    Case("jsonl-gz", "a .jsonl.gz input", (*SCORE, "--checkpoint", "{d}/run", "--input", "{d}/rows.jsonl.gz",
         "--output", "{d}/out-gz.jsonl", "--metrics-out", "{d}/m-gz.json"), 0, '"rows_scored": 8', "m-gz.json"),
    Case("incomplete-checkpoint", "a checkpoint directory without COMPLETE", (*SCORE, "--checkpoint",
         "{d}/ckpt-incomplete", "--input", "{d}/rows.jsonl"), 2, "incomplete"),
    Case("damaged-state-json", "the newest checkpoint's state.json damaged", (*TRAIN, "--resume",
         "{d}/run-bad-state"), 2, "damaged state.json"),
    Case("numeric-ids", "numeric ids in the input", (*SCORE, "--checkpoint", "{d}/run", "--input", "{d}/ids.jsonl",
         "--output", "{d}/out-ids.jsonl"), 0, '"id": 17,', "out-ids.jsonl"),
    Case("adapter-config-broken", "adapter_config.json that is not JSON (no checksums)", (*SCORE, "--checkpoint",
         "{d}/ckpt-adapter-json", "--input", "{d}/rows.jsonl"), 2, "adapter_config.json is damaged: not JSON"),
    Case("checkpoint-config-broken", "the checkpoint's config.json that is not JSON (no checksums)", (*SCORE,
         "--checkpoint", "{d}/ckpt-config-json", "--input", "{d}/rows.jsonl"), 2, "--checkpoint: cannot parse"),
    Case("input-is-dir", "--input is a directory", (*SCORE, "--checkpoint", "{d}/run", "--input", "{d}/folder.jsonl"),
         2, "is a directory, not a data file"),
]


def _table(rows, delimiter: str) -> str:
    quote = (lambda v: v) if delimiter == "\t" else (lambda v: v.replace(",", ";"))  # noqa: E731
    return "premise{0}hypothesis{0}label\n".format(delimiter) + "".join(
        f"{quote(p)}{delimiter}{quote(h)}{delimiter}{label}\n" for p, h, label in rows)


def _corrupt(src: Path, dst: Path, value: float, keep_sums: bool) -> None:
    shutil.copytree(src, dst)
    weights = dst / "adapter_model.safetensors"
    save_file({k: t.clone().fill_(value) for k, t in load_file(str(weights)).items()}, str(weights))
    if not keep_sums:
        (dst / "checksums.json").unlink()


def make_inputs(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "quote.tsv").write_text(_table(ROWS, "\t"))
    (d / "quote.csv").write_text(_table(ROWS, ","))
    rows = "".join(json.dumps({"premise": p, "hypothesis": h, "label": label}) + "\n" for p, h, label in ROWS)
    (d / "rows.jsonl").write_text(rows)
    (d / "rows.jsonl.gz").write_bytes(gzip.compress(rows.encode()))
    (d / "compressed.jsonl").write_bytes(gzip.compress(rows.encode()))
    (d / "ids.jsonl").write_text("".join(json.dumps({"id": 17 + i, "premise": p, "hypothesis": h}) + "\n"
                                         for i, (p, h, _) in enumerate(ROWS)))
    (d / "a-file").write_text("not a directory\n")
    (d / "folder.jsonl").mkdir(exist_ok=True)  # a directory named like a file
    run = d / "run"
    if not (run / "run_end.ok").exists():
        shutil.rmtree(run, ignore_errors=True)
        subprocess.run([*TRAIN, "--preset", "tiny", "--epochs", "2", "--train-size", "64", "--validation-size", "16",
                        "--test-size", "16", "--no-zero-shot-eval", "--output-dir", str(run), "--quiet"],
                       cwd=REPO, check=True)
        (run / "run_end.ok").write_text("")
    newest = run / "checkpoints" / "epoch-2"
    for name in ("ckpt-garbage", "ckpt-garbage-nosums", "ckpt-nan", "ckpt-incomplete", "run-garbage",
                 "run-bad-state", "ckpt-adapter-json", "ckpt-config-json"):
        shutil.rmtree(d / name, ignore_errors=True)
    _corrupt(newest, d / "ckpt-garbage", 3e38, keep_sums=True)
    _corrupt(newest, d / "ckpt-garbage-nosums", 3e38, keep_sums=False)
    _corrupt(newest, d / "ckpt-nan", float("nan"), keep_sums=False)
    for name, file in (("ckpt-adapter-json", "adapter_config.json"), ("ckpt-config-json", "config.json")):
        shutil.copytree(newest, d / name)
        (d / name / file).write_text("{not json")
        (d / name / "checksums.json").unlink()  # as a checkpoint assembled by hand
    shutil.copytree(newest, d / "ckpt-incomplete")
    (d / "ckpt-incomplete" / "COMPLETE").unlink()
    for name in ("run-garbage", "run-bad-state"):
        shutil.copytree(run, d / name, ignore=shutil.ignore_patterns(".lock"))
    for name in ("run-garbage", "run-bad-state"):  # as killed before its end: a resume loads epoch-2
        metrics = d / name / "metrics.jsonl"
        metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:-1]))
    shutil.rmtree(d / "run-garbage" / "checkpoints" / "epoch-2")
    _corrupt(d / "ckpt-garbage", d / "run-garbage" / "checkpoints" / "epoch-2", 3e38, keep_sums=True)
    (d / "run-bad-state" / "checkpoints" / "epoch-2" / "state.json").write_text("{not json")


def run_case(case: Case, d: Path) -> tuple[int, str]:
    """(exit status, the text the case's phrase is looked for in)."""
    argv = [a.format(d=d) for a in case.argv]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    text = proc.stderr + proc.stdout
    if case.in_file and (d / case.in_file).is_file():
        text += (d / case.in_file).read_text()
    return proc.returncode, text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--run", action="store_true", help="run every case and print the table")
    args = parser.parse_args()
    make_inputs(args.dir)
    if not args.run:
        print(f"inputs in {args.dir}")
        return 0
    print("| case | fault | exit | expected | says |\n| --- | --- | ---: | ---: | --- |")
    failed = 0
    for case in CASES:
        code, text = run_case(case, args.dir)
        ok = code == case.exit and case.says in text
        failed += not ok
        line = next((ln for ln in text.splitlines() if case.says in ln), text.strip().splitlines()[-1:] or [""])
        print(f"| {case.name} | {case.fault} | {code} | {case.exit} | {'' if ok else 'WRONG: '}"
              f"{line[0] if isinstance(line, list) else line} |".replace(str(args.dir), "DIR"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
