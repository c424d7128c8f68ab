"""The prompt template and the verbalizer: three label words whose first tokens are the classes."""

from __future__ import annotations

from nli_qlora.errors import UserError

# Tried in order when the configured words clash under a tokenizer.
_ALTERNATIVES = (
    (" entailment", " neutral", " contradiction"),
    (" yes", " maybe", " no"),
    (" true", " unknown", " false"),
    (" Yes", " Maybe", " No"),
    (" entail", " neutral", " contradict"),
)


def format_prompt(template: str, premise: str, hypothesis: str) -> str:
    return template.replace("{premise}", premise.strip()).replace("{hypothesis}", hypothesis.strip())


def first_tokens(tokenizer, words) -> list[int]:
    ids = []
    for word in words:
        pieces = tokenizer.encode(word, add_special_tokens=False)
        if not pieces:
            raise UserError(f"--label-words: {word!r} encodes to no tokens")
        ids.append(pieces[0])
    return ids


def label_token_ids(tokenizer, words) -> list[int]:
    """The three label words' first token ids; a UserError naming the clash (and words that work) if two agree."""
    ids = first_tokens(tokenizer, words)
    if len(set(ids)) == 3:
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            bad = words[ids.index(tokenizer.unk_token_id)]
            raise UserError(f"--label-words: {bad!r} is unknown to the tokenizer")
        return ids
    clash = [f"{w!r}" for w, i in zip(words, ids) if ids.count(i) > 1]
    token = tokenizer.convert_ids_to_tokens([i for i in ids if ids.count(i) > 1][0])
    hint = ""
    for alt in _ALTERNATIVES:
        alt_ids = first_tokens(tokenizer, alt)
        if len(set(alt_ids)) == 3 and tokenizer.unk_token_id not in alt_ids:
            hint = f"; try --label-words {' '.join(repr(w) for w in alt)}"
            break
    raise UserError(f"--label-words: {' and '.join(clash)} begin with the same token {token!r}{hint}")
