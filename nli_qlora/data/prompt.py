"""The prompt template and the verbalizer: label words whose first tokens are the classes."""

from __future__ import annotations

import re

from nli_qlora.infra.errors import UserError

# Tried in order when the configured words clash under a tokenizer (NLI's three classes).
_ALTERNATIVES = (
    (" entailment", " neutral", " contradiction"),
    (" yes", " maybe", " no"),
    (" true", " unknown", " false"),
    (" Yes", " Maybe", " No"),
    (" entail", " neutral", " contradict"),
)


_FIELDS = re.compile(r"\{(premise|hypothesis)\}")


def format_prompt(template: str, premise: str, hypothesis: str) -> str:
    """One pass over the template: braces in the sentences stay as they are (str.format would choke,
    and chained replace() would substitute a '{hypothesis}' that appears inside the premise)."""
    values = {"premise": premise.strip(), "hypothesis": hypothesis.strip()}
    return _FIELDS.sub(lambda m: values[m.group(1)], template)


def first_tokens(tokenizer, words) -> list[int]:
    ids = []
    for word in words:
        pieces = tokenizer.encode(word, add_special_tokens=False)
        if not pieces:
            raise UserError(f"--label-words: {word!r} encodes to no tokens")
        ids.append(pieces[0])
    return ids


def label_token_ids(tokenizer, words) -> list[int]:
    """The label words' first token ids; a UserError naming the clash (and words that work) if two agree."""
    ids = first_tokens(tokenizer, words)
    unk = tokenizer.unk_token_id
    if unk is not None and unk in ids:  # checked first: two unknown words also "share" <unk>
        bad = words[ids.index(unk)]
        raise UserError(f"--label-words: {bad!r} is unknown to the tokenizer{_hint(tokenizer, len(words))}")
    if len(set(ids)) == len(words):
        return ids
    clash = [f"{w!r}" for w, i in zip(words, ids) if ids.count(i) > 1]
    token = tokenizer.convert_ids_to_tokens([i for i in ids if ids.count(i) > 1][0])
    raise UserError(f"--label-words: {' and '.join(clash)} begin with the same token {token!r}{_hint(tokenizer, len(words))}")


def _hint(tokenizer, n: int) -> str:
    """'; try --label-words ...' with the first alternative of n words that passes the check, or nothing."""
    for alt in (a for a in _ALTERNATIVES if len(a) == n):
        alt_ids = first_tokens(tokenizer, alt)
        if len(set(alt_ids)) == len(alt) and (tokenizer.unk_token_id is None or tokenizer.unk_token_id not in alt_ids):
            return f"; try --label-words {' '.join(repr(w) for w in alt)}"
    return ""


def answer_token_ids(tokenizer, label_words) -> list[list[int]]:
    """Each label word's tokens plus eos: the answer a whole-sequence (lm) loss trains to generate."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return [tokenizer.encode(w, add_special_tokens=False) + eos for w in label_words]
