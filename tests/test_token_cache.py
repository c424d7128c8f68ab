"""nli_qlora.data.token_cache: tokenized prompts cached on disk give exactly what batches.encode gives."""

from __future__ import annotations

import pytest

from nli_qlora.data.batches import encode
from nli_qlora.data.read import load_split
from nli_qlora.infra.errors import DataError
from nli_qlora.data.builtin import TINY_DATASET, TINY_PROMPT
from nli_qlora.model.builtin import build_tokenizer
from nli_qlora.data.token_cache import cache_key, cache_path, load_or_encode


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLI_QLORA_CACHE", str(tmp_path))
    return tmp_path / "tokens"


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def examples():
    return load_split("validation", None, TINY_DATASET, 0, False)[0]


def _prompts(examples, template=TINY_PROMPT):
    from nli_qlora.data.prompt import format_prompt
    return [format_prompt(template, ex.premise, ex.hypothesis) for ex in examples]


def test_miss_then_hit_gives_encodes_result(cache, tok, examples):
    want = encode(examples, tok, TINY_PROMPT, 64, "v")
    lines = []
    first = load_or_encode(examples, tok, TINY_PROMPT, 64, "v", log=lines.append)
    assert first == want and lines == [] and len(list(cache.glob("*.pt"))) == 1
    second = load_or_encode(examples, tok, TINY_PROMPT, 64, "v", log=lines.append)
    assert second == want
    assert len(lines) == 1 and "token cache hit" in lines[0] and str(cache) in lines[0]


def test_max_length_is_applied_to_cached_ids_like_encode(cache, tok, examples):
    load_or_encode(examples, tok, TINY_PROMPT, 64, "v")  # fill the cache with no row too long
    lines = []
    rows, skipped = load_or_encode(examples, tok, TINY_PROMPT, 20, "v", skip_long=True, log=lines.append)
    assert (rows, skipped) == encode(examples, tok, TINY_PROMPT, 20, "v", skip_long=True) and skipped > 0
    assert len(lines) == 1  # the same file served a different --max-length
    with pytest.raises(DataError) as cached_err:
        load_or_encode(examples, tok, TINY_PROMPT, 20, "v")
    with pytest.raises(DataError) as plain_err:
        encode(examples, tok, TINY_PROMPT, 20, "v")
    assert str(cached_err.value) == str(plain_err.value)


def test_key_changes_with_template_rows_and_tokenizer(tok, examples):
    from nli_qlora.data.builtin import vocabulary
    base = cache_key(tok, _prompts(examples))
    assert cache_key(tok, _prompts(examples)) == base
    assert cache_key(tok, _prompts(examples, "answer : " + TINY_PROMPT)) != base
    assert cache_key(tok, _prompts(examples[:-1])) != base
    other = build_tokenizer()
    other.add_tokens(["zebra"])  # one more word: ids could differ
    assert len(other) == len(vocabulary()) + 1
    assert cache_key(other, _prompts(examples)) != base


def test_a_tokenizer_given_tokens_after_its_first_key_gets_another_key(examples):
    """The fingerprint is kept per tokenizer object (hashing its definition takes about 20 ms); tokens
    added to that very object afterwards must still change the key."""
    from nli_qlora.data.token_cache import _FINGERPRINTS
    same = build_tokenizer()
    base = cache_key(same, _prompts(examples))
    assert _FINGERPRINTS[same][0] == len(same) and cache_key(same, _prompts(examples)) == base
    same.add_tokens(["zebra"])
    assert cache_key(same, _prompts(examples)) != base
    assert cache_key(same, _prompts(examples)) == cache_key(_with_zebra(), _prompts(examples))


def _with_zebra():
    other = build_tokenizer()
    other.add_tokens(["zebra"])
    return other


def test_broken_cache_file_is_a_miss_and_is_rewritten(cache, tok, examples):
    path = cache_path(cache_key(tok, _prompts(examples)))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    lines = []
    assert load_or_encode(examples, tok, TINY_PROMPT, 64, "v", log=lines.append) == encode(examples, tok, TINY_PROMPT, 64, "v")
    assert lines == [] and path.stat().st_size > 100
    load_or_encode(examples, tok, TINY_PROMPT, 64, "v", log=lines.append)
    assert len(lines) == 1


def test_unwritable_cache_never_fails_the_run(tmp_path, monkeypatch, tok, examples):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would be")
    monkeypatch.setenv("NLI_QLORA_CACHE", str(blocker))
    assert load_or_encode(examples, tok, TINY_PROMPT, 64, "v") == encode(examples, tok, TINY_PROMPT, 64, "v")


def test_no_rows(cache, tok):
    assert load_or_encode([], tok, TINY_PROMPT, 64, "v") == ([], 0)
