"""nli_qlora.data.split_cache: a split read again from the cache is the split reading its file gives,
for the same bytes, size and labels only; real files, real JSON Lines and TSV."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from nli_qlora.data import split_cache
from nli_qlora.data.read import load_split, rows_digest
from nli_qlora.infra.errors import DataError
from nli_qlora.labels import NLI, LabelSet


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLI_QLORA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "splits"


def _rows(n: int = 30, bad_at: int | None = None, unlabeled_at: int | None = None) -> list[str]:
    labels = ["entailment", "neutral", "contradiction"]
    rows = [json.dumps({"premise": f"A dog runs {i}.", "hypothesis": f"An animal moves {i}.", "label": labels[i % 3],
                        "id": f"r{i}"}) for i in range(n)]
    if bad_at is not None:
        rows[bad_at] = json.dumps({"premise": "only a premise"})
    if unlabeled_at is not None:
        rows[unlabeled_at] = json.dumps({"premise": "p", "hypothesis": "h", "label": "-"})
    return rows


def _write(path, rows) -> str:
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_the_second_read_comes_from_the_cache_and_equals_the_first(tmp_path, cache):
    f = _write(tmp_path / "train.jsonl", _rows(30, unlabeled_at=4))
    first = load_split("train", f, "", 10, False)
    assert len(list(cache.glob("*.json"))) == 1
    second = load_split("train", f, "", 10, False)
    assert second[0] == first[0] and second[1] == first[1]
    assert second[1].as_dict()["unlabeled_dropped"] == 1 and second[1].as_dict()["selected"] == 10


def test_what_is_stored_under_the_key_is_what_a_run_reads(tmp_path, cache):
    """The hit path is real: an entry written under the file's key (consistent with its digest) is served."""
    f = _write(tmp_path / "train.jsonl", _rows(12))
    examples, stats = load_split("train", f, "", 3, False)
    entry_file = next(cache.glob("*.json"))
    entry = json.loads(entry_file.read_text())
    entry["rows"][0][0] = "A premise only the cache holds."
    from nli_qlora.data.read import Example
    entry["stats"]["digest"] = rows_digest([Example(*r) for r in entry["rows"]])
    entry_file.write_text(json.dumps(entry))
    assert load_split("train", f, "", 3, False)[0][0].premise == "A premise only the cache holds."


def test_an_entry_that_does_not_add_up_is_a_miss_and_is_rewritten(tmp_path, cache):
    f = _write(tmp_path / "train.jsonl", _rows(12))
    want = load_split("train", f, "", 3, False)
    entry_file = next(cache.glob("*.json"))
    entry = json.loads(entry_file.read_text())
    entry["rows"][0][0] = "tampered without a new digest"
    entry_file.write_text(json.dumps(entry))
    assert load_split("train", f, "", 3, False) == want
    entry_file.write_text("{ torn")
    assert load_split("train", f, "", 3, False) == want
    assert json.loads(entry_file.read_text())["rows"][0][0] == want[0][0].premise  # rewritten


def test_other_bytes_size_format_or_labels_are_other_keys(tmp_path, cache):
    f = _write(tmp_path / "train.jsonl", _rows(30))
    base = load_split("train", f, "", 10, False)
    assert load_split("train", f, "", 5, False)[1].selected == 5
    edited = _rows(30)
    edited[0] = edited[0].replace("entailment", "contradiction")
    os.utime(_write(tmp_path / "train.jsonl", edited), (1, 1))  # even with an old time stamp
    assert load_split("train", f, "", 10, False)[0][0].label == NLI.names.index("contradiction") != base[0][0].label
    swapped = LabelSet(("contradiction", "neutral", "entailment"), ("no", "maybe", "yes"))
    assert load_split("train", f, "", 10, False, swapped)[0][0].label == 0
    tsv = tmp_path / "train.tsv"
    tsv.write_text("premise\thypothesis\tlabel\nA man.\tA person.\tentailment\n")
    assert load_split("train", str(tsv), "", 0, False)[0][0].premise == "A man."
    assert len(list(cache.glob("*.json"))) == 5
    copy = tmp_path / "copy.tsv"
    shutil.copy(tsv, copy)  # the same bytes under another name: the same entry
    got = load_split("train", str(copy), "", 0, False)
    assert got[1].source == str(copy) and len(list(cache.glob("*.json"))) == 5


def test_skipped_rows_come_back_and_raise_where_bad_rows_are_not_skipped(tmp_path, cache):
    f = _write(tmp_path / "train.jsonl", _rows(20, bad_at=7))
    with pytest.raises(DataError) as uncached:
        load_split("train", f, "", 0, False)
    examples, stats = load_split("train", f, "", 0, True)  # as --dry-run reads it: cached with its bad row
    assert stats.bad_skipped == 1 and [b.line for b in stats.bad_rows] == [8]
    again = load_split("train", f, "", 0, True)
    assert again[1].bad_rows == stats.bad_rows and again[0] == examples
    with pytest.raises(DataError) as cached:
        load_split("train", f, "", 0, False)
    assert str(cached.value) == str(uncached.value)
    assert "line 8" in str(cached.value) and "--skip-bad-rows" in str(cached.value)


def test_a_cache_that_cannot_be_written_never_fails_a_run(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("NLI_QLORA_CACHE", str(blocker))
    f = _write(tmp_path / "train.jsonl", _rows(12))
    assert load_split("train", f, "", 3, False)[1].selected == 3
    assert split_cache.write("k", [], {}) is False
