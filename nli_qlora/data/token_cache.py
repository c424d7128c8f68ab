"""Tokenized prompts cached on disk: a preflight (`--dry-run`) tokenizes once, the real run reads it.

`load_or_encode` returns exactly what `nli_qlora.data.batches.encode` returns. The cache holds the
tokenizer's output for every prompt, before any --max-length check; `encode` itself then applies
the length rule to the cached ids, so the error message and the skip rule live in one place and a
changed --max-length reuses the same file.

The key is a SHA-256 over what decides the token ids:
  - the tokenizer: class, name, vocabulary size and a hash of its full definition (the fast
    tokenizer's serialized JSON: vocabulary, merges, normalizer, special-token post-processing;
    for a slow tokenizer its sorted vocabulary and special tokens);
  - every formatted prompt, in order: this covers the data file's content (exactly the rows that
    were selected), the prompt template, and the selection (--train-size and friends).
Label words and --max-length do not change a prompt's token ids, so they are not part of it.

Files live under `cache_dir()/tokens/<key>.pt` (`$NLI_QLORA_CACHE`, default ~/.cache/nli_qlora),
written atomically; an unreadable or mismatched file counts as a miss and is rewritten."""

from __future__ import annotations

import hashlib
import io
import json
import weakref
from pathlib import Path
from typing import Callable

import torch

from nli_qlora.data.batches import Encoded, encode
from nli_qlora.data.prompt import format_prompt
from nli_qlora.data.read import Example
from nli_qlora.infra.atomic import write_bytes
from nli_qlora.infra.cache import cache_dir

CACHE_VERSION = 1


_FINGERPRINTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # tokenizer -> (its length, digest)


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash that changes whenever the tokenizer could give different ids for the same text.

    Hashing the fast tokenizer's serialized definition takes about 20 ms (SmolLM2's), and a run keys
    three splits with one tokenizer: it is kept per tokenizer object, and made again when the
    tokenizer's length changes (tokens added to it)."""
    length = len(tokenizer)
    try:
        kept = _FINGERPRINTS.get(tokenizer)
    except TypeError:  # an object weakref cannot follow: no memo
        kept = None
    if kept is not None and kept[0] == length:
        return kept[1]
    digest = _fingerprint(tokenizer)
    try:
        _FINGERPRINTS[tokenizer] = (length, digest)
    except TypeError:
        pass
    return digest


def _fingerprint(tokenizer) -> str:
    h = hashlib.sha256()
    h.update(f"{type(tokenizer).__name__}\0{getattr(tokenizer, 'name_or_path', '')}\0{len(tokenizer)}\0".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    return h.hexdigest()


def cache_key(tokenizer, prompts: list[str]) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}\0{tokenizer_fingerprint(tokenizer)}\0{len(prompts)}\0".encode())
    for prompt in prompts:
        h.update(prompt.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:32]


def cache_path(key: str) -> Path:
    return cache_dir() / "tokens" / f"{key}.pt"


def _read(path: Path, key: str, rows: int) -> list[list[int]] | None:
    """The cached ids, or None when the file is missing, unreadable or not this key's."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data.get("version") != CACHE_VERSION or data.get("key") != key:
            return None
        lengths = data["lengths"].tolist()
        if len(lengths) != rows:
            return None
        flat = data["ids"].tolist()
    except FileNotFoundError:
        return None
    except Exception:  # a torn or foreign file (torch.load raises many types) is just a miss
        return None
    out, start = [], 0
    for n in lengths:
        out.append(flat[start:start + n])
        start += n
    return out


def _write(path: Path, key: str, ids: list[list[int]]) -> bool:
    """Write atomically; a cache that cannot be written (read-only, full disk) never fails a run."""
    buf = io.BytesIO()
    torch.save({"version": CACHE_VERSION, "key": key,
                "lengths": torch.tensor([len(x) for x in ids], dtype=torch.int32),
                "ids": torch.tensor([t for x in ids for t in x], dtype=torch.int32)}, buf)
    try:
        write_bytes(path, buf.getvalue())
    except OSError:
        return False
    return True


class _Replay:
    """Stands in for the tokenizer inside `encode`, answering with the cached ids."""

    def __init__(self, ids: list[list[int]]):
        self.ids = ids

    def __call__(self, prompts, add_special_tokens=True):
        if len(prompts) != len(self.ids):
            raise ValueError(f"token cache: {len(prompts)} prompts but {len(self.ids)} cached rows")
        return {"input_ids": self.ids}


def load_or_encode(examples: list[Example], tokenizer, template: str, max_length: int, source: str,
                   skip_long: bool = False, log: Callable[[str], None] | None = None,
                   write: bool = True) -> tuple[list[Encoded], int]:
    """`encode(...)`'s result, from the cache when this tokenizer has seen these prompts before.

    On a hit, `log` gets one line naming the cache file; on a miss the ids are computed with one
    batched tokenizer call and written (unless `write` is False)."""
    prompts = [format_prompt(template, ex.premise, ex.hypothesis) for ex in examples]
    key = cache_key(tokenizer, prompts)
    path = cache_path(key)
    ids = _read(path, key, len(prompts))
    if ids is not None:
        if log is not None:
            log(f"token cache hit: {source}: {len(ids)} rows from {path}")
    else:
        ids = tokenizer(prompts, add_special_tokens=True)["input_ids"] if prompts else []
        ids = [list(x) for x in ids]
        if write and prompts:
            _write(path, key, ids)
    return encode(examples, _Replay(ids), template, max_length, source, skip_long=skip_long)
