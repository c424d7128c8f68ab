"""The built-in NLI data set (`builtin:tiny-nli`), made here: nothing is downloaded.

Its labels follow from lexical cues in the hypothesis, so the tiny random-weight model of
nli_qlora.model.builtin can learn them with LoRA adapters; `vocabulary` is every word it uses,
which is that model's whole tokenizer."""

from __future__ import annotations

import random

TINY_DATASET = "builtin:tiny-nli"
TINY_PROMPT = "premise : {premise} . hypothesis : {hypothesis} . answer :"
TINY_LABEL_WORDS = (" entailment", " neutral", " contradiction")
_SIZES = {"train": 1200, "validation": 300, "test": 300}
_SEEDS = {"train": 1, "validation": 2, "test": 3}

_SUBJECTS = ["man", "woman", "boy", "girl", "dog", "cat", "child", "worker", "player", "chef", "singer", "farmer"]
_ADJECTIVES = ["young", "old", "tall", "small", "happy", "tired", "busy", "quiet"]
_VERBS = [("runs", "run"), ("sits", "sit"), ("eats", "eat"), ("sleeps", "sleep"), ("sings", "sing"),
          ("reads", "read"), ("walks", "walk"), ("plays", "play"), ("cooks", "cook"), ("swims", "swim")]
_PLACES = ["park", "kitchen", "street", "garden", "beach", "house", "field", "city", "forest", "room"]
_REASONS = ["for fun", "with a friend", "before dinner", "after work", "for money", "to win", "alone", "today"]
_WORDS = ["a", "the", "in", "is", "not", "does", "nobody", "someone", "never", "premise", "hypothesis", "answer",
          ":", ".", "entailment", "neutral", "contradiction", "yes", "no", "maybe", "because", "probably"]


def _pair(rng: random.Random, label: int) -> tuple[str, str]:
    subj, adj = rng.choice(_SUBJECTS), rng.choice(_ADJECTIVES)
    verb, base = rng.choice(_VERBS)
    place = rng.choice(_PLACES)
    premise = f"a {adj} {subj} {verb} in the {place}"
    if label == 0:  # entailment: a restatement, sometimes more general
        hypothesis = rng.choice([f"a {subj} {verb}", f"someone {verb} in the {place}", f"the {subj} {verb}"])
    elif label == 1:  # neutral: adds a reason the premise does not support
        hypothesis = rng.choice([f"the {subj} {verb} {rng.choice(_REASONS)}",
                                 f"the {subj} probably {verb} {rng.choice(_REASONS)}"])
    else:  # contradiction: negation or a different action
        other = rng.choice([v for v in _VERBS if v[0] != verb])[0]
        hypothesis = rng.choice([f"the {subj} does not {base}", f"nobody {verb} in the {place}",
                                 f"the {subj} {other} in the {place}"])
    return premise, hypothesis


def tiny_split(split: str) -> list[dict]:
    """Rows in Hugging Face field names, balanced and deterministic for each split."""
    if split not in _SIZES:
        raise KeyError(split)
    rng = random.Random(_SEEDS[split])
    rows = []
    for i in range(_SIZES[split]):
        premise, hypothesis = _pair(rng, i % 3)
        rows.append({"premise": premise, "hypothesis": hypothesis, "label": i % 3, "id": f"{split}-{i}"})
    rng.shuffle(rows)
    return rows


def vocabulary() -> list[str]:
    words = set(_WORDS + _SUBJECTS + _ADJECTIVES + _PLACES)
    for verb, base in _VERBS:
        words.update((verb, base))
    for reason in _REASONS:
        words.update(reason.split())
    return ["<pad>", "<unk>", "<eos>"] + sorted(words)
