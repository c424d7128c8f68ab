"""NLI rows from local files or the hub, in Hugging Face or official SNLI field names.

Every row is accounted for: it becomes an Example, is counted as unlabelled (dropped from training
and evaluation splits), or is a BadRow naming its line and reason."""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import json
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

from nli_qlora.data import split_cache
from nli_qlora.data.builtin import tiny_split
from nli_qlora.infra.errors import DataError, UserError
from nli_qlora.labels import NLI, UNLABELED, LabelSet

FORMATS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
_FIELD_NAMES = {"premise": ("premise", "sentence1"), "hypothesis": ("hypothesis", "sentence2"),
                "label": ("label", "gold_label")}
_ID_NAMES = ("id", "pairID", "pair_id", "idx", "index")


@dataclass(frozen=True)
class Example:
    premise: str
    hypothesis: str
    label: int | None  # the class index in the run's label set (0 entailment, ... for NLI); None = no gold label
    line: int  # 1-based line (jsonl/csv/tsv) or record number (json/parquet/hub)
    id: str | int | None = None


def rows_digest(examples: list[Example]) -> str:
    """The rows' text and labels, in order, as a short sha256: a file edited between a run's start
    and its resume, or different on two machines, gives another digest."""
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.premise}\x1f{e.hypothesis}\x1f{e.label}\x1e".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass
class SplitStats:
    source: str
    rows_read: int = 0
    unlabeled_dropped: int = 0
    bad_skipped: int = 0
    selected: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    requested: int = 0  # the --*-size asked for (0 = all)
    digest: str | None = None  # of the selected rows (rows_digest): a resume checks it trains on the same rows

    def as_dict(self) -> dict:
        return {"file": self.source, "rows_read": self.rows_read, "unlabeled_dropped": self.unlabeled_dropped,
                "bad_skipped": self.bad_skipped, "selected": self.selected, "requested": self.requested,
                "digest": self.digest}

    def shortfall(self, split: str) -> str | None:
        """A warning when fewer rows are used than --SPLIT-size asked for."""
        if self.requested and self.selected < self.requested:
            return (f"--{split}-size {self.requested:,}: {self.source} has {self.selected:,} usable rows; "
                    f"using all {self.selected:,}")
        return None


def no_rows_left(split: str, source: str, too_long: int, max_length: int) -> str:
    """Why a split has no row to train or evaluate on, after over-long rows were skipped."""
    return (f"{source}: no {split} rows left: all {too_long:,} are longer than --max-length {max_length} "
            f"(skipped by --skip-bad-rows); raise --max-length")


# --- parsing one record ---------------------------------------------------------------------------

_SURROGATES = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8


def _has_surrogates(text: str) -> bool:
    return _SURROGATES.search(text) is not None


def _row_id(value) -> str | int:
    """An id keeps its type (17 comes back as 17, not "17"); anything but text or an integer is text."""
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else str(value)


def _field(keys: dict, names: tuple[str, ...], lower: dict) -> str | None:
    """The record's key for a field: an exact name first, else one that differs only in case (a
    `Label` column is the label, not a row without one). `lower`: the record's keys by lower case."""
    exact = next((n for n in names if n in keys), None)
    if exact is not None:
        return exact
    return next((lower[n.lower()] for n in names if n.lower() in lower), None)


@functools.lru_cache(maxsize=256)
def _layout(keys: tuple) -> tuple[dict, tuple]:
    """Which key holds each field, and the id's candidate keys in order, for one set of keys: found
    once for all the rows that share it (every row of most files: SNLI's 40,000 rows at every start)."""
    present, lower = dict.fromkeys(keys), {str(k).lower(): k for k in keys}
    fields = {key: _field(present, names, lower) for key, names in _FIELD_NAMES.items()}
    ids = tuple(k for k in (_field(present, (n,), lower) for n in _ID_NAMES) if k is not None)
    return fields, ids


def parse_record(record, line: int, labels: LabelSet = NLI) -> Example | BadRow | object:
    """A dict from any format -> Example, BadRow, or UNLABELED when the row has no gold label."""
    if not isinstance(record, dict):
        return BadRow(line, f"expected an object with premise/hypothesis, got {type(record).__name__}")
    found, id_keys = _layout(tuple(record))
    values = {}
    for key, names in _FIELD_NAMES.items():
        name = found[key]
        values[key] = record[name] if name is not None else None
        if key != "label" and name is None:
            return BadRow(line, f"missing field {key!r} (or {names[1]!r})")
    for key in ("premise", "hypothesis"):
        value = values[key]
        if not isinstance(value, str):
            return BadRow(line, f"field {key!r} is {type(value).__name__}, not text")
        if _has_surrogates(value):
            return BadRow(line, f"field {key!r} has bytes that are not UTF-8")
        if not value.strip():
            return BadRow(line, f"field {key!r} is empty")
    has_label = found["label"] is not None
    label = None
    if has_label:
        try:
            label = labels.parse(values["label"])
        except ValueError as err:
            return BadRow(line, str(err))
    id_name = next((k for k in id_keys if record[k] not in (None, "")), None)
    if id_name and isinstance(record[id_name], str) and _has_surrogates(record[id_name]):
        return BadRow(line, f"field {id_name!r} has bytes that are not UTF-8")
    example = Example(values["premise"], values["hypothesis"], None if label is UNLABELED else label, line,
                      _row_id(record[id_name]) if id_name else None)
    return (UNLABELED, example) if label is UNLABELED else example


# --- reading files ------------------------------------------------------------------------------

def file_format(path: str, fmt: str | None = None) -> str:
    if fmt:
        return fmt if fmt.startswith(".") else "." + fmt
    name = Path(path).name.lower()
    suffix = Path(name[:-3] if name.endswith(".gz") else name).suffix  # data.jsonl.gz reads as .jsonl
    if suffix not in FORMATS or (name.endswith(".gz") and suffix == ".parquet"):
        raise UserError(f"{path}: unknown file type {suffix or '(none)'!r}; use one of {' '.join(FORMATS)} "
                        f"(text formats may be gzip-compressed: .jsonl.gz, .csv.gz, ...)")
    return suffix


GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _text_stream(path: str) -> IO[str]:
    """UTF-8 (a leading byte-order mark is dropped, as some SNLI copies have one); undecodable
    bytes become surrogates so the row that holds them is reported, not the whole file. A gzip
    file is read through gzip when its name says so, and refused otherwise: read as text, its
    compressed bytes would count as rows."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="surrogateescape", newline="")
    if path.lower().endswith(".gz") and not _is_gzip(path):
        raise UserError(f"{path}: named .gz but not gzip-compressed")
    if _is_gzip(path):
        if not path.lower().endswith(".gz"):
            raise UserError(f"{path}: a gzip-compressed file; name it {Path(path).name}.gz to read it compressed, "
                            f"or decompress it")
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _csv_records(f: IO[str], delimiter: str) -> Iterator[tuple[int, dict | BadRow]]:
    """Rows as dicts keyed by the header, each numbered by the line it starts on (blank lines and
    quoted line breaks counted); a malformed row is a BadRow and reading goes on after it.

    A quote opened and never closed swallows the rows after it into one field, and the csv module
    says nothing: a field that runs over a line break into a line shaped like a whole row (as many
    delimiters as the header) is a BadRow naming the lines it took."""
    reader = csv.reader(f, delimiter=delimiter)
    header, start = None, 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield start, BadRow(start, f"broken CSV: {err}")
            start = reader.line_num + 1
            continue
        if not row:  # a blank line
            pass
        elif header is not None and _swallowed_rows(row, delimiter, len(header)):
            yield start, BadRow(start, f"lines {start}-{reader.line_num} were read as one row: a quote (\") opened "
                                       f"on line {start} is not closed where its field ends")
        elif header is None:
            header = row
        else:
            yield start, _fields(header, row, start)
        start = reader.line_num + 1


def _fields(header: list[str], row: list[str], line: int) -> dict | BadRow:
    if len(row) != len(header):
        return BadRow(line, f"{len(row)} fields, header has {len(header)}")
    return dict(zip(header, row))


def _swallowed_rows(row: list[str], delimiter: str, columns: int) -> bool:
    return any(line.count(delimiter) >= columns - 1 for value in row if "\n" in value
               for line in value.splitlines()[1:])


def _unquote(value: str) -> str:
    """A whole field in CSV-style quotes (as pandas and the csv module write TSV) loses them."""
    if len(value) >= 2 and value[0] == value[-1] == '"' and '"' not in value[1:-1].replace('""', ""):
        return value[1:-1].replace('""', '"')
    return value


def _tsv_records(f: IO[str]) -> Iterator[tuple[int, dict | BadRow]]:
    """One line, one row, split on tabs, as NLI data sets write TSV: SNLI's and MultiNLI's own
    .txt files put bare quote marks in sentences, which a CSV reader would take as quoting and
    use to merge the rows that follow. A field wholly in quotes (CSV-style) is unquoted."""
    header = None
    for line_no, line in enumerate(f, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        row = [_unquote(v) for v in line.split("\t")]
        if header is None:
            header = row
        else:
            yield line_no, _fields(header, row, line_no)


def iter_records(path: str, fmt: str | None = None) -> Iterator[tuple[int, dict | BadRow]]:
    """(line, record-or-BadRow) for every row, streaming where the format allows it."""
    last = 0
    try:
        for last, record in _records(path, fmt):
            yield last, record
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # a cut download, a damaged copy: not rows to skip
        raise UserError(f"{path}: the gzip data is truncated or corrupt after line {last} ({err})") from None


def _records(path: str, fmt: str | None) -> Iterator[tuple[int, dict | BadRow]]:
    fmt = file_format(path, fmt)
    if path != "-" and Path(path).is_dir():
        raise UserError(f"{path}: is a directory, not a data file")
    if path != "-" and not Path(path).is_file():
        raise UserError(f"no such file: {path}")
    if fmt == ".jsonl":
        with _text_stream(path) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield line_no, json.loads(line)
                except json.JSONDecodeError as err:
                    yield line_no, BadRow(line_no, f"broken JSON: {err.msg} (column {err.colno})")
    elif fmt == ".csv":
        with _text_stream(path) as f:
            yield from _csv_records(f, ",")
    elif fmt == ".tsv":
        with _text_stream(path) as f:
            yield from _tsv_records(f)
    elif fmt == ".json":
        try:
            with _text_stream(path) as f:
                data = json.load(f)
        except json.JSONDecodeError as err:  # one document: no row to skip, so never skippable
            raise DataError(f"{path}: line {err.lineno}: broken JSON: {err.msg} (column {err.colno})") from None
        if isinstance(data, dict) and "data" in data:
            data = data["data"]
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON list of rows (or {{\"data\": [...]}})")
        for i, record in enumerate(data, 1):
            yield i, record
    elif fmt == ".parquet":
        import pyarrow.parquet as pq
        try:
            table = pq.ParquetFile(path)
        except Exception as err:  # pyarrow raises several types for a broken file
            raise UserError(f"{path}: cannot read parquet: {str(err).splitlines()[0]}") from None
        i = 0
        for batch in table.iter_batches(batch_size=65536):
            for record in batch.to_pylist():
                i += 1
                yield i, record


def iter_hub_records(dataset: str, split: str) -> Iterator[tuple[int, dict]]:
    """Rows of a hub data set through `datasets` (needs the hub or its local cache)."""
    try:
        from datasets import load_dataset
        ds = load_dataset(dataset, split=split)
    except Exception as err:  # datasets raises many types: offline, unknown name, unknown split
        raise UserError(f"--dataset: cannot load {dataset!r} split {split!r}: {str(err).splitlines()[0]} "
                        f"(offline? pass --{split}-file)") from None
    for i, record in enumerate(ds, 1):
        yield i, record


# --- a split: read, drop unlabelled, select evenly spaced -----------------------------------------

def evenly_spaced(total: int, size: int) -> list[int]:
    """Indices of `size` rows spread evenly over `total` (every total/size-th row, from the first)."""
    if size <= 0 or size >= total:
        return list(range(total))
    return [i * total // size for i in range(size)]


def collect(records: Iterator[tuple[int, dict | BadRow]], source: str, skip_bad: bool,
            require_label: bool = True, labels: LabelSet = NLI) -> tuple[list[Example], SplitStats]:
    """All usable rows of a source; bad rows raise a DataError unless skip_bad, then they are counted."""
    stats = SplitStats(source)
    examples = []
    for line, record in records:
        stats.rows_read += 1
        parsed = record if isinstance(record, BadRow) else parse_record(record, line, labels)
        if require_label and isinstance(parsed, Example) and parsed.label is None:
            parsed = BadRow(line, "missing field 'label' (or 'gold_label')")
        if isinstance(parsed, BadRow):
            if not skip_bad:
                raise bad_row_error(source, parsed)
            stats.bad_skipped += 1
            stats.bad_rows.append(parsed)
        elif isinstance(parsed, tuple):  # (UNLABELED, example)
            if require_label:
                stats.unlabeled_dropped += 1
            else:
                examples.append(parsed[1])
        else:
            examples.append(parsed)
    return examples, stats


def bad_row_error(source: str, bad: BadRow) -> DataError:
    return DataError(f"{source}: line {bad.line}: {bad.reason} (--skip-bad-rows to skip it)")


def load_split(split: str, file: str | None, dataset: str, size: int, skip_bad: bool,
               labels: LabelSet = NLI) -> tuple[list[Example], SplitStats]:
    """One split, labelled rows only, then `size` evenly spaced rows of them.

    Unlabelled rows are dropped *before* the spacing, so `size` labelled rows come back whenever the
    split has that many; the number dropped is in the stats. A data file's split comes from
    data.split_cache when the same bytes were read for the same size and labels before."""
    key = None
    if file and file != "-" and Path(file).is_file():
        key = split_cache.cache_key(file, file_format(file), size, labels.names, labels.aliases)
        cached = _from_cache(split_cache.read(key), file, skip_bad)
        if cached is not None:
            return cached
    if file:
        records, source = iter_records(file), file
    elif dataset in BUILTIN_DATASETS:
        records, source = BUILTIN_DATASETS[dataset](split), f"{dataset}:{split}"
    else:
        records, source = iter_hub_records(dataset, split), f"{dataset}:{split}"
    examples, stats = collect(records, source, skip_bad, labels=labels)
    if not examples:
        raise UserError(f"{source}: no labelled rows")
    chosen = [examples[i] for i in evenly_spaced(len(examples), size)]
    stats.selected, stats.requested, stats.digest = len(chosen), size, rows_digest(chosen)
    if key is not None:
        split_cache.write(key, [[e.premise, e.hypothesis, e.label, e.line, e.id] for e in chosen],
                          dict(stats.as_dict(), bad_rows=[[b.line, b.reason] for b in stats.bad_rows]))
    return chosen, stats


def _from_cache(entry: dict | None, file: str, skip_bad: bool) -> tuple[list[Example], SplitStats] | None:
    """The split a cache entry holds, as reading `file` gives it; None for an entry that does not add up."""
    if entry is None:
        return None
    try:
        chosen = [Example(p, h, label, line, row_id) for p, h, label, line, row_id in entry["rows"]]
        s = entry["stats"]
        stats = SplitStats(file, rows_read=s["rows_read"], unlabeled_dropped=s["unlabeled_dropped"],
                           bad_skipped=s["bad_skipped"], selected=s["selected"], requested=s["requested"],
                           digest=s["digest"], bad_rows=[BadRow(line, reason) for line, reason in s["bad_rows"]])
    except (KeyError, TypeError, ValueError):
        return None
    if not chosen or stats.selected != len(chosen) or stats.digest != rows_digest(chosen):
        return None
    if stats.bad_rows and not skip_bad:
        raise bad_row_error(file, stats.bad_rows[0])
    return chosen, stats


def _tiny_records(split: str):
    return enumerate(tiny_split(split), 1)


BUILTIN_DATASETS = {"builtin:tiny-nli": _tiny_records}
