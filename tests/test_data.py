"""Reading NLI rows: every local format in both field namings, the real SNLI files, bad rows,
unlabelled rows and the evenly spaced selection."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nli_qlora.labels import NLI_NAMES as LABELS
from nli_qlora.data.read import evenly_spaced, load_split, rows_digest
from nli_qlora.infra.errors import DataError, UserError

SNLI = Path("/work/shared/data/snli")
VALIDATION = SNLI / "validation.jsonl"
needs_snli = pytest.mark.skipif(not VALIDATION.is_file(), reason=f"real SNLI files not at {SNLI}")


# --- writers: the same rows in every format and field naming -------------------------------------

def hf_record(premise: str, hypothesis: str, label: int | None) -> dict:
    """Hugging Face names: label 0/1/2, -1 = no gold label."""
    return {"premise": premise, "hypothesis": hypothesis, "label": -1 if label is None else label}


def official_record(premise: str, hypothesis: str, label: int | None, n: int) -> dict:
    """The official SNLI jsonl names: gold_label a word, '-' = no gold label, plus its other fields."""
    gold = "-" if label is None else LABELS[label]
    return {"annotator_labels": [gold], "captionID": f"{n}.jpg#0", "gold_label": gold, "pairID": f"{n}.jpg#0r1",
            "sentence1": premise, "sentence1_binary_parse": "( x )", "sentence1_parse": "(ROOT (S x))",
            "sentence2": hypothesis, "sentence2_binary_parse": "( y )", "sentence2_parse": "(ROOT (S y))"}


def write_rows(path: Path, records: list[dict], json_shape: str = "list") -> Path:
    """Write records in the format named by the file's extension (.json as a list or {"data": [...]})."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(records if json_shape == "list" else {"data": records}), encoding="utf-8")
    elif path.suffix in (".csv", ".tsv"):
        names = list(records[0])
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writerow(names)
            for r in records:
                writer.writerow([json.dumps(r[k]) if isinstance(r[k], list) else r[k] for k in names])
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        raise ValueError(path)
    return path


def rows_of(examples) -> list[tuple[str, str, int]]:
    return [(e.premise, e.hypothesis, e.label) for e in examples]


def load(path: Path, size: int = 0, skip_bad: bool = False):
    return load_split("validation", str(path), "unused", size, skip_bad)


# --- the real SNLI validation file -----------------------------------------------------------------

@pytest.fixture(scope="module")
def validation():
    return load(VALIDATION)


@needs_snli
def test_real_validation_file_reads_every_row_with_the_published_label_counts(validation):
    examples, stats = validation
    assert len(examples) == stats.rows_read == stats.selected == 9842
    assert stats.unlabeled_dropped == stats.bad_skipped == 0
    assert Counter(e.label for e in examples) == {0: 3329, 1: 3235, 2: 3278}  # SOURCE.md
    assert examples[0].line == 1 and examples[-1].line == 9842


@needs_snli
def test_real_validation_file_selection_is_evenly_spaced_from_the_first_row(validation):
    everything, _ = validation
    chosen, stats = load(VALIDATION, size=100)
    assert stats.selected == len(chosen) == 100 and stats.rows_read == 9842
    assert [e.line for e in chosen] == [i * 9842 // 100 + 1 for i in range(100)]
    assert chosen == [everything[i * 9842 // 100] for i in range(100)]


@needs_snli
@pytest.mark.parametrize("naming", ["huggingface", "official"])
@pytest.mark.parametrize("name,json_shape", [("rows.jsonl", None), ("rows.json", "list"), ("rows.json", "data"),
                                             ("rows.csv", None), ("rows.tsv", None), ("rows.parquet", None)],
                         ids=["jsonl", "json-list", "json-data", "csv", "tsv", "parquet"])
def test_every_format_and_naming_gives_the_same_examples_as_the_real_file(validation, tmp_path, naming, name,
                                                                           json_shape):
    """A slice of real SNLI (quotes, commas, stray spaces and all) survives every conversion exactly."""
    everything, _ = validation
    # every 33rd row, plus the four rows whose text has leading/trailing spaces
    picked = sorted(set(everything[::33]) | {e for e in everything if e.premise != e.premise.strip()
                                               or e.hypothesis != e.hypothesis.strip()}, key=lambda e: e.line)
    records = [hf_record(e.premise, e.hypothesis, e.label) if naming == "huggingface"
               else official_record(e.premise, e.hypothesis, e.label, e.line) for e in picked]
    path = write_rows(tmp_path / name, records, json_shape or "list")
    examples, stats = load(path)
    assert rows_of(examples) == rows_of(picked)
    assert stats.rows_read == stats.selected == len(picked) and stats.bad_skipped == 0
    if naming == "official":
        assert examples[0].id == f"{picked[0].line}.jpg#0r1"  # pairID becomes the row id


# --- unlabelled rows: dropped before the spacing, and counted --------------------------------------

@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".parquet", ".json"])
@pytest.mark.parametrize("naming", ["huggingface", "official"])
def test_unlabelled_rows_are_dropped_before_the_spacing_and_counted(tmp_path, suffix, naming):
    # rows 0..299; every third row has no gold label (-1 / '-')
    raw = [(f"premise {i}", f"hypothesis {i}", None if i % 3 == 2 else i % 3) for i in range(300)]
    records = [hf_record(*r) if naming == "huggingface" else official_record(*r, i) for i, r in enumerate(raw)]
    path = write_rows(tmp_path / f"rows{suffix}", records)
    labelled = [r for r in raw if r[2] is not None]

    examples, stats = load(path, size=50)
    assert stats.rows_read == 300 and stats.unlabeled_dropped == 100 and stats.bad_skipped == 0
    assert stats.selected == len(examples) == 50  # `size` labelled rows, not `size` rows minus the unlabelled
    assert rows_of(examples) == [labelled[i * 200 // 50] for i in range(50)]

    everything, _ = load(path, size=0)
    assert rows_of(everything) == labelled


def test_a_split_with_no_labelled_rows_is_one_user_error_naming_the_file(tmp_path):
    path = write_rows(tmp_path / "none.jsonl", [hf_record("a", "b", None)] * 3)
    with pytest.raises(UserError, match=f"{path}: no labelled rows"):
        load(path)


def test_a_nan_label_in_a_float_column_means_no_gold_label(tmp_path):
    """pandas stores an int column with gaps as float, the gap as NaN."""
    path = tmp_path / "gaps.parquet"
    pq.write_table(pa.table({"premise": ["a", "b", "c"], "hypothesis": ["x", "y", "z"],
                             "label": [0.0, float("nan"), 2.0]}), path)
    examples, stats = load(path)
    assert [e.label for e in examples] == [0, 2] and stats.unlabeled_dropped == 1


# --- bad rows: one DataError naming file and line, or skipped and counted --------------------------

GOOD = {"premise": "A man plays.", "hypothesis": "Someone plays.", "label": 0}


def jsonl_lines(*middle: bytes) -> bytes:
    """Two good rows, the bad one(s) on line 3, two good rows after."""
    good = (json.dumps(GOOD) + "\n").encode()
    return good * 2 + b"".join(middle) + good * 2


def csv_lines(middle: str, delimiter: str = ",") -> bytes:
    """Header on line 1, good rows on lines 2-3, the bad row on line 4, two good rows after."""
    row = delimiter.join(["A man plays.", "Someone plays.", "0"]) + "\n"
    header = delimiter.join(["premise", "hypothesis", "label"]) + "\n"
    return (header + row * 2 + middle + row * 2).encode()


BAD_ROWS = {
    # name: (file name, bytes, line of the bad row, words the reason must contain)
    "jsonl-missing-field": ("d.jsonl", jsonl_lines(b'{"premise": "A man plays.", "label": 0}\n'), 3,
                            "missing field 'hypothesis'"),
    "jsonl-missing-label": ("d.jsonl", jsonl_lines(b'{"premise": "A man plays.", "hypothesis": "x"}\n'), 3,
                            "missing field 'label'"),
    "jsonl-unknown-label": ("d.jsonl", jsonl_lines(b'{"premise": "a", "hypothesis": "b", "label": 7}\n'), 3,
                            "unknown label 7"),
    "official-unknown-label": ("d.jsonl", jsonl_lines(b'{"sentence1": "a", "sentence2": "b", "gold_label": '
                                                      b'"maybe"}\n'), 3, "unknown label 'maybe'"),
    "jsonl-broken-json": ("d.jsonl", jsonl_lines(b'{"premise": "a", "hypothesis": \n'), 3, "broken JSON"),
    "jsonl-not-an-object": ("d.jsonl", jsonl_lines(b'["a", "b", 0]\n'), 3, "expected an object"),
    "jsonl-undecodable-bytes": ("d.jsonl", jsonl_lines(b'{"premise": "caf\xe9 \xff\xfe", "hypothesis": "b", '
                                                       b'"label": 0}\n'), 3, "not UTF-8"),
    "jsonl-undecodable-id": ("d.jsonl", jsonl_lines(b'{"premise": "a", "hypothesis": "b", "label": 0, "id": "x\xffy"}\n'),
                             3, "field 'id' has bytes that are not UTF-8"),
    "jsonl-empty-text": ("d.jsonl", jsonl_lines(b'{"premise": "a", "hypothesis": "  ", "label": 0}\n'), 3,
                         "field 'hypothesis' is empty"),
    "jsonl-text-not-a-string": ("d.jsonl", jsonl_lines(b'{"premise": 12, "hypothesis": "b", "label": 0}\n'), 3,
                                "field 'premise' is int"),
    "csv-too-many-fields": ("d.csv", csv_lines("a,b,0,extra\n"), 4, "4 fields, header has 3"),
    "csv-too-few-fields": ("d.csv", csv_lines("a,b\n"), 4, "2 fields, header has 3"),
    "csv-unknown-label": ("d.csv", csv_lines("a,b,entails\n"), 4, "unknown label 'entails'"),
    "csv-empty-text": ("d.csv", csv_lines(",b,1\n"), 4, "field 'premise' is empty"),
    "csv-undecodable-bytes": ("d.csv", csv_lines("x,y,0\n").replace(b"x,y", b"\xc3\x28,y"), 4, "not UTF-8"),
    "tsv-too-many-fields": ("d.tsv", csv_lines("a\tb\t0\tz\n", "\t"), 4, "4 fields, header has 3"),
    "tsv-too-few-fields": ("d.tsv", csv_lines("a b 0\n", "\t"), 4, "1 fields, header has 3"),
    "json-missing-field": ("d.json", json.dumps([GOOD, GOOD, {"premise": "a", "label": 1}, GOOD, GOOD]).encode(), 3,
                           "missing field 'hypothesis'"),
    "json-data-unknown-label": ("d.json", json.dumps({"data": [GOOD, GOOD, dict(GOOD, label="?"), GOOD, GOOD]}).encode(),
                                3, "unknown label '?'"),
}


def _parquet_with_bad_row(path: Path) -> None:
    pq.write_table(pa.Table.from_pylist([GOOD, GOOD, dict(GOOD, premise=""), GOOD, GOOD]), path)


@pytest.mark.parametrize("case", list(BAD_ROWS) + ["parquet-empty-text"])
def test_a_bad_row_is_one_data_error_naming_file_and_line(tmp_path, case):
    path, line, reason = _bad_file(tmp_path, case)
    with pytest.raises(DataError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: line {line}: ") and reason in message
    assert "--skip-bad-rows" in message and "\n" not in message


@pytest.mark.parametrize("case", list(BAD_ROWS) + ["parquet-empty-text"])
def test_a_bad_row_is_skipped_and_counted_with_skip_bad_rows(tmp_path, case):
    path, line, reason = _bad_file(tmp_path, case)
    examples, stats = load(path, skip_bad=True)
    assert stats.bad_skipped == 1 and [b.line for b in stats.bad_rows] == [line]
    assert reason in stats.bad_rows[0].reason
    assert len(examples) == stats.selected == stats.rows_read - 1 == 4
    assert all(rows_of([e]) == [("A man plays.", "Someone plays.", 0)] for e in examples)


def _bad_file(tmp_path: Path, case: str) -> tuple[Path, int, str]:
    if case == "parquet-empty-text":
        path = tmp_path / "d.parquet"
        _parquet_with_bad_row(path)
        return path, 3, "field 'premise' is empty"
    name, data, line, reason = BAD_ROWS[case]
    path = tmp_path / name
    path.write_bytes(data)
    return path, line, reason


def test_line_numbers_count_blank_lines_and_quoted_line_breaks_in_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('premise,hypothesis,label\n"two\nlines",b,0\n\nx,y,0\na,b,bad\n', encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}: line 6: unknown label 'bad'"):
        load(path)
    examples, _ = load(path, skip_bad=True)
    assert [(e.line, e.premise) for e in examples] == [(2, "two\nlines"), (5, "x")]


def test_reading_goes_on_after_a_row_the_csv_module_rejects(tmp_path):
    """A field over csv's size limit raises csv.Error mid-file: that row is bad, the rows after it still count."""
    path = tmp_path / "d.csv"
    path.write_text("premise,hypothesis,label\na,b,0\n" + "x" * 200_000 + ",y,1\nc,d,2\ne,f,0\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}: line 3: broken CSV: field larger than field limit"):
        load(path)
    examples, stats = load(path, skip_bad=True)
    assert rows_of(examples) == [("a", "b", 0), ("c", "d", 2), ("e", "f", 0)] and stats.bad_skipped == 1


def test_a_byte_order_mark_is_not_part_of_the_first_field_name(tmp_path):
    """One public copy of the SNLI test split is a CSV with a UTF-8 BOM and the official names."""
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfgold_label,sentence1,sentence2\nneutral,a,b\n-,c,d\ncontradiction,e,f\n")
    examples, stats = load(path)
    assert rows_of(examples) == [("a", "b", 1), ("e", "f", 2)] and stats.unlabeled_dropped == 1


def test_many_bad_rows_are_all_counted(tmp_path):
    lines = [json.dumps(GOOD), "{broken", json.dumps({"premise": "a"}), json.dumps(dict(GOOD, label="x")),
             json.dumps(dict(GOOD, label=-1)), json.dumps(GOOD)]
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    examples, stats = load(path, skip_bad=True)
    assert stats.as_dict() == {"file": str(path), "rows_read": 6, "unlabeled_dropped": 1, "bad_skipped": 3,
                               "selected": 2, "requested": 0, "digest": rows_digest(examples)}
    assert [b.line for b in stats.bad_rows] == [2, 3, 4] and len(examples) == 2


def test_a_broken_json_document_is_a_data_error_naming_file_and_line_even_when_skipping(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n{"premise": "a", "hypothesis": "b", "label": 0},\n{"premise": \n]', encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}: line 4: broken JSON"):
        load(path, skip_bad=True)  # one document: there is no row to skip


# --- files that cannot be read at all --------------------------------------------------------------

@pytest.mark.parametrize("name", ["rows.txt", "rows", "rows.txt.gz"])
def test_an_unknown_file_extension_is_one_user_error(tmp_path, name):
    path = tmp_path / name
    path.write_text(json.dumps(GOOD) + "\n")
    with pytest.raises(UserError) as err:
        load(path)
    assert type(err.value) is UserError
    assert str(err.value).startswith(f"{path}: unknown file type") and ".jsonl .json .csv .tsv .parquet" in str(err.value)


def test_a_missing_file_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file: .*nothing.jsonl"):
        load(tmp_path / "nothing.jsonl")


def test_a_broken_parquet_file_is_one_user_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UserError, match=f"{path}: cannot read parquet"):
        load(path)


# --- evenly spaced selection -----------------------------------------------------------------------

def test_evenly_spaced_takes_every_550th_of_550000_for_1000():
    picked = evenly_spaced(550_000, 1000)
    assert picked == list(range(0, 550_000, 550))


def test_evenly_spaced_takes_every_100th_of_10000_for_100():
    assert evenly_spaced(10_000, 100) == list(range(0, 10_000, 100))


def test_evenly_spaced_with_an_uneven_ratio_is_i_times_total_over_size():
    picked = evenly_spaced(9842, 1000)
    assert picked == [i * 9842 // 1000 for i in range(1000)]
    assert len(set(picked)) == 1000 and picked[0] == 0 and picked[-1] < 9842
    assert {b - a for a, b in zip(picked, picked[1:])} == {9, 10}


@pytest.mark.parametrize("size", [0, 10, 11, 1000])
def test_evenly_spaced_size_zero_or_at_least_total_means_every_row(size):
    assert evenly_spaced(10, size) == list(range(10))


@pytest.mark.parametrize("damage", ["truncated", "bad-crc"])
def test_a_damaged_gzip_file_is_one_user_error_naming_it(tmp_path, damage):
    """A cut download or a damaged copy is not rows to skip: one line, however --skip-bad-rows is set."""
    import gzip

    data = gzip.compress(jsonl_lines() * 200)
    data = data[: len(data) // 2] if damage == "truncated" else data[:-8] + bytes(8)  # CRC and size zeroed
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(data)
    for skip_bad in (False, True):
        with pytest.raises(UserError, match=rf"^{path}: the gzip data is truncated or corrupt after line \d+ "):
            load(path, skip_bad=skip_bad)


def test_field_names_that_differ_only_in_case_are_those_fields(tmp_path):
    """A `Label` column is the gold label: read as a row without one, scoring would report no
    accuracy at all and say nothing."""
    path = tmp_path / "d.csv"
    path.write_text("Premise,Hypothesis,Label,ID\nA man plays.,Someone plays.,entailment,0\n"
                    "A dog runs.,A cat sleeps.,contradiction,x1\n", encoding="utf-8")
    examples, stats = load(path)
    assert [(e.premise, e.label, e.id) for e in examples] == [("A man plays.", 0, "0"), ("A dog runs.", 2, "x1")]
    assert stats.unlabeled_dropped == 0


def test_rows_with_different_keys_in_one_file_each_read_their_own(tmp_path):
    """The fields are found once per set of keys (read._layout), not once per file: a file whose
    rows name their fields differently reads each row by its own names, in any order of keys."""
    rows = [{"premise": "p1", "hypothesis": "h1", "label": "neutral", "id": "a"},
            {"sentence2": "h2", "gold_label": "contradiction", "sentence1": "p2", "pairID": "b"},
            {"Premise": "p3", "Hypothesis": "h3", "Gold_Label": "-"},  # no gold label: dropped as unlabelled
            {"label": 0, "id": "", "idx": 7, "hypothesis": "h4", "premise": "p4"},  # an empty id: the next name
            {"premise": "p5", "hypothesis": "h5", "label": "neutral", "id": "e"}]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    examples, stats = load(path)
    assert [(e.premise, e.hypothesis, e.label, e.id) for e in examples] == [
        ("p1", "h1", 1, "a"), ("p2", "h2", 2, "b"), ("p4", "h4", 0, 7), ("p5", "h5", 1, "e")]
    assert stats.unlabeled_dropped == 1
