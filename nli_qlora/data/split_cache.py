"""A split's selected rows kept on disk, keyed by its data file's bytes: a run reads what the last run,
or its `--dry-run`, parsed.

Parsing SNLI's three files (40,000 rows, each checked and its label read) takes 0.4 s on a 2-core CPU,
where hashing the same 6 MB takes 0.02 s; a run's whole data step took 0.36-0.70 s on the lent GPU's
host (docs/benchmarks.md, issue 14's twelfth round). The key is a SHA-256 over what decides the result:
  - the file's bytes (not its name or time: an edited file is a new key, a copied one the same);
  - its format (the same bytes read as TSV or JSON Lines are other rows);
  - the size asked for (which rows are selected) and the label set's names and aliases (how labels
    read).
The entry holds the selected rows and the split's counts, its skipped rows among them (data.read
turns them back into a split, and raises for the first skipped row where bad rows are not to be
skipped, as reading the file would). Files live under `cache_dir()/splits/<key>.json`, written
atomically; an unreadable or mismatched file is a miss and is rewritten; a cache that cannot be
written never fails a run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nli_qlora.infra.atomic import write_text
from nli_qlora.infra.cache import cache_dir
from nli_qlora.infra.digest import file_sha256

CACHE_VERSION = 1


def cache_key(path: str, fmt: str, size: int, names: tuple[str, ...], aliases: tuple[tuple[str, str], ...]) -> str:
    spec = json.dumps([CACHE_VERSION, file_sha256(path), fmt, size, list(names), [list(a) for a in aliases]])
    return hashlib.sha256(spec.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def cache_path(key: str) -> Path:
    return cache_dir() / "splits" / f"{key}.json"


def read(key: str) -> dict | None:
    """The entry written under `key`, or None when it is missing, unreadable or not this key's."""
    try:
        entry = json.loads(cache_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("version") != CACHE_VERSION or entry.get("key") != key:
        return None
    return entry


def write(key: str, rows: list[list], stats: dict) -> bool:
    try:
        write_text(cache_path(key), json.dumps({"version": CACHE_VERSION, "key": key, "rows": rows, "stats": stats}))
    except (OSError, ValueError):  # read-only or full disk; text no file system encoding takes
        return False
    return True
