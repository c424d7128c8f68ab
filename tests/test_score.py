"""The score CLI (python -m nli_qlora.score) on a real tiny run: every input format, stdin/stdout
pipes, one output row per input row in input order, the same predictions the training run wrote,
bad rows accounted for, chunked streaming, --compare, zero-shot, and one-line user errors."""

from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nli_qlora.training.classification import summarize
from nli_qlora.labels import NLI_NAMES as LABELS
from nli_qlora.cli.score import main as score_main
from nli_qlora.data.builtin import tiny_split
from nli_qlora.cli.train import main as train_main

REPO = Path(__file__).resolve().parents[1]


# --- fixtures: one real tiny run for the whole module -------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The tiny preset trained for one epoch: a real checkpoint plus the predictions it wrote."""
    path = tmp_path_factory.mktemp("score") / "run"
    assert train_main(["--preset", "tiny", "--epochs", "1", "--output-dir", str(path), "--quiet"]) == 0
    return path


@pytest.fixture(scope="module")
def test_rows() -> list[dict]:
    """The tiny test split, in the order the training run read (and predicted) it."""
    return tiny_split("test")


def write_rows(path: Path, records: list[dict]) -> Path:
    """Records in the format named by the file's extension."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(records), encoding="utf-8")
    elif path.suffix in (".csv", ".tsv"):
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(records)
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    return path


def official(record: dict) -> dict:
    """The official SNLI field names: sentence1/sentence2, gold_label a word, pairID."""
    return {"sentence1": record["premise"], "sentence2": record["hypothesis"], "gold_label": LABELS[record["label"]],
            "pairID": record["id"]}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score(capsys, *argv) -> tuple[int, str, str]:
    rc = score_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def cli(*argv, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """The real command in a child process, as a shell pipeline runs it."""
    return subprocess.run([sys.executable, "-m", "nli_qlora.score", *map(str, argv)], input=stdin,
                          capture_output=True, cwd=REPO)


# --- the same scorer as training -----------------------------------------------------------------

def test_predictions_equal_the_training_runs_own(run_dir, test_rows, tmp_path, capsys):
    """Same rows, same checkpoint, same scorer: the labels and probabilities the run wrote for its
    test split after epoch 1. A run directory resolves to its latest checkpoint."""
    data = write_rows(tmp_path / "test.jsonl", test_rows)
    rc, _, _ = score(capsys, "--checkpoint", run_dir, "--input", data, "--output", tmp_path / "preds.jsonl", "--quiet")
    assert rc == 0
    ours = read_jsonl(tmp_path / "preds.jsonl")
    theirs = read_jsonl(run_dir / "predictions" / "test-epoch1.jsonl")
    assert [(r["line"], r["id"], r["predicted"]) for r in ours] == [(r["line"], r["id"], r["predicted"]) for r in theirs]
    for a, b in zip(ours, theirs):
        for label in LABELS:
            assert a["probabilities"][label] == pytest.approx(b["probabilities"][label], abs=2e-5)


def test_zero_shot_model_equals_the_runs_epoch0_predictions(run_dir, test_rows, tmp_path, capsys):
    """--model without an adapter scores the pretrained model with the preset's prompt and label words:
    what the run measured before training."""
    data = write_rows(tmp_path / "test.jsonl", test_rows)
    rc, _, _ = score(capsys, "--model", "builtin:tiny-phi", "--preset", "tiny", "--input", data,
                     "--output", tmp_path / "zero.jsonl", "--quiet")
    assert rc == 0
    ours = read_jsonl(tmp_path / "zero.jsonl")
    theirs = read_jsonl(run_dir / "predictions" / "test-epoch0.jsonl")
    assert [r["predicted"] for r in ours] == [r["predicted"] for r in theirs]


def test_metrics_out_is_summarize_of_the_written_predictions(run_dir, test_rows, tmp_path, capsys):
    data = write_rows(tmp_path / "test.jsonl", test_rows[:60])
    out, metrics_file = tmp_path / "preds.jsonl", tmp_path / "metrics.json"
    rc, stdout, _ = score(capsys, "--checkpoint", run_dir, "--input", data, "--output", out, "--metrics-out", metrics_file)
    assert rc == 0
    rows = read_jsonl(out)
    expected = summarize([LABELS.index(r["gold"]) for r in rows], [LABELS.index(r["predicted"]) for r in rows])
    metrics = json.loads(metrics_file.read_text())
    assert {k: metrics[k] for k in expected} == expected
    assert metrics["rows_in"] == metrics["rows_scored"] == 60 and metrics["rows_failed"] == 0
    assert all(r["correct"] == (r["gold"] == r["predicted"]) for r in rows)
    # the rows' seconds, and the process's: its start to the first row, then to the end of scoring
    assert 0 < metrics["before_rows_s"] and metrics["process_s"] >= metrics["before_rows_s"] + metrics["seconds"] - 0.01
    # the table goes to stdout when the rows go to a file (its lines wrap where the path is long)
    assert "balanced accuracy" in " ".join(stdout.split()) and "contradiction" in stdout


# --- formats, order, one row per row -------------------------------------------------------------

@pytest.mark.parametrize("suffix,names", [(".jsonl", "hf"), (".jsonl", "official"), (".json", "hf"),
                                          (".csv", "official"), (".tsv", "hf"), (".parquet", "official")])
def test_every_input_format_gives_one_row_per_row_in_order(run_dir, test_rows, tmp_path, capsys, suffix, names):
    records = test_rows[:24]
    data = write_rows(tmp_path / f"in{suffix}", [official(r) if names == "official" else r for r in records])
    rc, _, _ = score(capsys, "--checkpoint", run_dir, "--input", data, "--output", tmp_path / "out.jsonl", "--quiet")
    assert rc == 0
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    assert [(r["premise"], r["hypothesis"], r["gold"]) for r in rows] == \
        [(r["premise"], r["hypothesis"], LABELS[r["label"]]) for r in records]
    for r in rows:
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["predicted"] == max(r["probabilities"], key=r["probabilities"].get)


def test_csv_output_has_probability_columns(run_dir, test_rows, tmp_path, capsys):
    ids = [0, "", 7, None, "a"]  # an integer id 0 is an id (GLUE's idx starts there), not a missing one
    unlabelled = [{k: v for k, v in r.items() if k != "label"} for r in test_rows[:10]]
    data = write_rows(tmp_path / "in.jsonl", [{**r, "id": ids[i]} if i < len(ids) else r for i, r in enumerate(unlabelled)])
    rc, _, _ = score(capsys, "--checkpoint", run_dir, "--input", data, "--output", tmp_path / "out.csv", "--quiet")
    assert rc == 0
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["line", "id", "premise", "hypothesis", "predicted", "p_entailment", "p_neutral",
                             "p_contradiction", "gold", "correct"]
    assert [r["line"] for r in rows] == [str(i) for i in range(1, 11)]
    assert [r["id"] for r in rows[:5]] == ["0", "", "7", "", "a"]
    for r in rows:
        assert sum(float(r[f"p_{label}"]) for label in LABELS) == pytest.approx(1.0, abs=1e-5)
        assert r["gold"] == "" and r["correct"] == ""  # no gold labels given: none invented


def test_chunks_smaller_than_the_file_keep_order_and_values(run_dir, test_rows, tmp_path, capsys):
    """Streaming in chunks of 7 (bad rows among them) writes exactly what one big chunk writes."""
    lines = [json.dumps(r) for r in test_rows[:40]]
    lines[5] = "{broken"
    lines[23] = json.dumps({"premise": "a man runs"})
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(lines) + "\n")
    outputs = []
    for chunk in (7, 4096):
        out = tmp_path / f"out-{chunk}.jsonl"
        rc, _, _ = score(capsys, "--checkpoint", run_dir, "--input", data, "--output", out, "--chunk-rows", chunk,
                         "--quiet", "--skip-bad-rows")
        assert rc == 0
        outputs.append((read_jsonl(out), read_jsonl(tmp_path / f"out-{chunk}.errors.jsonl")))
    (small, small_errors), (big, big_errors) = outputs
    assert [r["line"] for r in small] == [i for i in range(1, 41) if i not in (6, 24)]
    assert [e["line"] for e in small_errors] == [6, 24]
    assert small_errors == big_errors
    assert [r["predicted"] for r in small] == [r["predicted"] for r in big]
    for a, b in zip(small, big):
        for label in LABELS:
            assert a["probabilities"][label] == pytest.approx(b["probabilities"][label], abs=1e-5)


# --- pipes ----------------------------------------------------------------------------------------

def test_stdin_to_stdout_pipeline(run_dir, test_rows):
    """`... | score --input - | ...` in a real child process: JSONL rows on stdout in input order and
    nothing else there; bad rows, the summary and the metrics table on stderr; exit status 1."""
    lines = [json.dumps(r) for r in test_rows[:10]]
    lines.insert(3, "{not json")
    lines.insert(7, json.dumps({"premise": "a man runs", "hypothesis": "a man runs", "label": "maybe"}))
    done = cli("--checkpoint", run_dir, "--input", "-", stdin=("\n".join(lines) + "\n").encode())
    assert done.returncode == 1, done.stderr.decode()
    out = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in test_rows[:10]]
    assert [r["line"] for r in out] == [1, 2, 3, 5, 6, 7, 9, 10, 11, 12]
    err = done.stderr.decode()
    assert "stdin: line 4: broken JSON" in err and "stdin: line 8: unknown label 'maybe'" in err
    assert "2 of 12 rows could not be scored" in err
    assert "balanced accuracy" in " ".join(err.split()) and "Traceback" not in err


def test_csv_on_stdin_and_stdout(run_dir, test_rows, capsys, monkeypatch):
    """--input-format/--output-format choose the formats when there is no file extension to go by."""
    text = "premise,hypothesis,label\n" + "".join(f"{r['premise']},{r['hypothesis']},{r['label']}\n"
                                                    for r in test_rows[:6])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    rc, stdout, err = score(capsys, "--checkpoint", run_dir, "--input", "-", "--input-format", "csv",
                            "--output-format", "csv", "--quiet")
    assert rc == 0 and err == ""
    rows = list(csv.DictReader(stdout.splitlines()))
    assert [r["line"] for r in rows] == ["2", "3", "4", "5", "6", "7"]
    assert [r["gold"] for r in rows] == [LABELS[r["label"]] for r in test_rows[:6]]


# --- bad rows -------------------------------------------------------------------------------------

def bad_file(path: Path, good: list[dict]) -> tuple[Path, dict[int, str]]:
    """Good rows with every kind of bad row between them; returns the bad lines and a word of each reason."""
    lines = [json.dumps(r).encode() for r in good[:10]]
    bad = {
        3: (json.dumps({"premise": "a cat sits"}).encode(), "missing field 'hypothesis'"),
        5: (json.dumps({"premise": "a cat sits", "hypothesis": "the cat sits", "label": "perhaps"}).encode(),
            "unknown label"),
        7: (b'{"premise": "a cat sits", "hyp', "broken JSON"),
        9: (b'{"premise": "a cat \xff\xfe sits", "hypothesis": "the cat sits", "label": 0}', "not UTF-8"),
        11: (json.dumps({"premise": " ".join(["a"] * 200), "hypothesis": "the cat sits", "label": 0}).encode(),
             "over --max-length"),
    }
    for line in sorted(bad):
        lines.insert(line - 1, bad[line][0])
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, {line: why for line, (_, why) in bad.items()}


def test_bad_rows_go_to_the_errors_file_and_every_good_row_is_scored(run_dir, test_rows, tmp_path, capsys):
    data, bad = bad_file(tmp_path / "in.jsonl", test_rows)
    out = tmp_path / "preds.jsonl"
    rc, _, err = score(capsys, "--checkpoint", run_dir, "--input", data, "--output", out, "--quiet")
    assert rc == 1
    rows, errors = read_jsonl(out), read_jsonl(tmp_path / "preds.errors.jsonl")
    total = len(data.read_bytes().splitlines())
    assert len(rows) + len(errors) == total == 15  # input rows = output rows + error rows
    assert [e["line"] for e in errors] == sorted(bad)
    for e in errors:
        assert bad[e["line"]] in e["reason"]
    assert [r["line"] for r in rows] == [i for i in range(1, 16) if i not in bad]
    assert err.count("\n") == 1 and "5 of 15 rows could not be scored" in err


def test_skip_bad_rows_exits_zero_with_the_same_accounting(run_dir, test_rows, tmp_path, capsys):
    data, bad = bad_file(tmp_path / "in.jsonl", test_rows)
    out, errors = tmp_path / "preds.csv", tmp_path / "elsewhere" / "errs.jsonl"
    rc, _, err = score(capsys, "--checkpoint", run_dir, "--input", data, "--output", out, "--errors", errors,
                       "--skip-bad-rows", "--quiet")
    assert rc == 0
    assert len(list(csv.DictReader(out.open()))) + len(read_jsonl(errors)) == 15
    assert "could not be scored" in err


def test_a_broken_csv_row_is_one_error_and_reading_goes_on(run_dir, test_rows, tmp_path, capsys):
    records = test_rows[:5]
    text = "premise,hypothesis,label\n" + "".join(f"{r['premise']},{r['hypothesis']},{r['label']}\n" for r in records)
    text = text.replace(f"{records[2]['hypothesis']},", f"{records[2]['hypothesis']},extra,", 1)
    data = tmp_path / "in.csv"
    data.write_text(text)
    rc, _, _ = score(capsys, "--checkpoint", run_dir, "--input", data, "--output", tmp_path / "o.jsonl", "--quiet")
    assert rc == 1
    assert [r["line"] for r in read_jsonl(tmp_path / "o.jsonl")] == [2, 3, 5, 6]
    assert [e["line"] for e in read_jsonl(tmp_path / "o.errors.jsonl")] == [4]


# --- one-line user errors (exit 2) ----------------------------------------------------------------

def one_line_error(rc: int, out: str, err: str, *words: str) -> None:
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("python -m nli_qlora.score: error: ")
    for word in words:
        assert word in err


def test_missing_checkpoint_is_one_line_exit_2(test_rows, tmp_path, capsys):
    data = write_rows(tmp_path / "in.jsonl", test_rows[:3])
    out = tmp_path / "preds.jsonl"
    one_line_error(*score(capsys, "--checkpoint", tmp_path / "nope", "--input", data, "--output", out),
                   "--checkpoint", "nope")
    assert not out.exists()


def test_run_directory_without_a_checkpoint_is_one_line_exit_2(test_rows, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints" / "epoch-1").mkdir(parents=True)  # half-written: no COMPLETE
    (run / "metrics.jsonl").write_text("")
    data = write_rows(tmp_path / "in.jsonl", test_rows[:3])
    one_line_error(*score(capsys, "--checkpoint", run, "--input", data), "no complete checkpoint")


def test_empty_input_is_one_line_exit_2(run_dir, tmp_path, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text("\n\n")
    out = tmp_path / "preds.jsonl"
    one_line_error(*score(capsys, "--checkpoint", run_dir, "--input", data, "--output", out), "no rows")
    assert not out.exists()


def test_missing_input_file_is_one_line_exit_2(run_dir, tmp_path, capsys):
    one_line_error(*score(capsys, "--checkpoint", run_dir, "--input", tmp_path / "nope.jsonl"), "nope.jsonl")


def test_checkpoint_with_prompt_flags_is_refused(run_dir, tmp_path, capsys):
    one_line_error(*score(capsys, "--checkpoint", run_dir, "--input", tmp_path / "x.jsonl", "--label-words", "a",
                          "b", "c"), "--label-words")


@pytest.mark.parametrize("change,words", [({"r": 4}, "size mismatch"),
                                          ({"target_modules": ["q_proj", "k_proj"]}, "no layer for")])
def test_an_adapter_that_does_not_fit_is_one_line_exit_2(run_dir, test_rows, tmp_path, capsys, change, words):
    """A real checkpoint whose adapter config no longer matches its weights/base: one clear line."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(run_dir / "checkpoints" / "epoch-1", ckpt)
    adapter = json.loads((ckpt / "adapter_config.json").read_text())
    (ckpt / "adapter_config.json").write_text(json.dumps(dict(adapter, **change)))
    (ckpt / "checksums.json").unlink()  # as a checkpoint assembled by hand: only the fit check can catch it
    data = write_rows(tmp_path / "in.jsonl", test_rows[:3])
    one_line_error(*score(capsys, "--checkpoint", ckpt, "--input", data), "does not fit", words)


def test_a_damaged_adapter_file_is_one_line_exit_2(run_dir, test_rows, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(run_dir / "checkpoints" / "epoch-1", ckpt)
    weights = ckpt / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # cut short, as by a full disk or a broken copy
    data = write_rows(tmp_path / "in.jsonl", test_rows[:3])
    one_line_error(*score(capsys, "--checkpoint", ckpt, "--input", data), "adapter_model.safetensors is damaged")


# --- compare --------------------------------------------------------------------------------------

def test_compare_writes_corrected_and_uncorrected_rows(run_dir, test_rows, tmp_path, capsys):
    """--compare the base model ('before') with the checkpoint ('after'): each row's category follows
    from the two models' own predictions, and the counts match the rows written."""
    data = write_rows(tmp_path / "in.jsonl", test_rows[:90])
    cases, metrics = tmp_path / "cases.jsonl", tmp_path / "metrics.json"
    rc, stdout, _ = score(capsys, "--checkpoint", run_dir, "--compare", "builtin:tiny-phi", "--input", data,
                          "--output", tmp_path / "after.jsonl", "--compare-out", cases, "--metrics-out", metrics)
    assert rc == 0
    rc, _, _ = score(capsys, "--model", "builtin:tiny-phi", "--preset", "tiny", "--input", data,
                     "--output", tmp_path / "before.jsonl", "--quiet")
    assert rc == 0
    after, before = read_jsonl(tmp_path / "after.jsonl"), read_jsonl(tmp_path / "before.jsonl")
    expected = {}
    for b, a in zip(before, after):
        was, now = b["predicted"] == b["gold"], a["predicted"] == a["gold"]
        category = {(False, True): "corrected", (False, False): "not_corrected", (True, False): "regressed"}.get((was, now))
        if category:
            expected[a["line"]] = (category, b["predicted"], a["predicted"])
    written = read_jsonl(cases)
    assert {r["line"]: (r["category"], r["before"], r["after"]) for r in written} == expected
    assert [r["line"] for r in written] == sorted(expected)  # input order
    counts = json.loads(metrics.read_text())["compare"]["cases"]
    for category in ("corrected", "not_corrected", "regressed"):
        assert counts[category] == sum(c == category for c, _, _ in expected.values())
    assert counts["corrected"] > 0 and counts["not_corrected"] > 0
    assert sum(counts.values()) == 90
    assert "corrected" in stdout and "regressed" in stdout


def test_compare_out_needs_compare(run_dir, tmp_path, capsys):
    one_line_error(*score(capsys, "--checkpoint", run_dir, "--input", tmp_path / "x.jsonl", "--compare-out",
                          tmp_path / "c.jsonl"), "--compare")


# --- the output file appears only whole -----------------------------------------------------------

def test_ctrl_c_mid_stream_leaves_no_output_file(run_dir, test_rows, tmp_path):
    """Rows arrive on stdin and stop coming; Ctrl-C then: exit 130, no output, no temporary file."""
    out = tmp_path / "out" / "preds.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "nli_qlora.score", "--checkpoint", str(run_dir), "--input", "-",
                             "--output", str(out), "--chunk-rows", "2", "--quiet"],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    proc.stdin.write("".join(json.dumps(r) + "\n" for r in test_rows[:5]).encode())
    proc.stdin.flush()
    while proc.poll() is None and not list(out.parent.glob(".preds.jsonl.*.tmp")):
        time.sleep(0.1)  # scoring has begun once the output's temporary file exists
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGINT)
    err = proc.communicate()[1].decode()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_the_attention_kernel_is_a_run_setting_of_the_score_command():
    """--attention-kernel may override a checkpoint's own, as the other settings of how a model runs."""
    from nli_qlora.cli.score import build_parser
    from nli_qlora.predict.targets import run_settings
    args = build_parser().parse_args(["--checkpoint", "run", "--input", "rows.jsonl", "--attention-kernel", "auto"])
    assert run_settings(args) == {"attention_kernel": "auto"}
    assert "attention_kernel" not in run_settings(build_parser().parse_args(["--checkpoint", "run", "--input", "x"]))
