"""The embedded offline default: a tiny Phi model, its tokenizer and an NLI data set, all made here.

Nothing is downloaded. The data set's labels follow from lexical cues in the hypothesis, so a tiny
random-weight model with LoRA adapters can learn them; the model is built from a fixed seed and
saved once under the cache directory, then loaded like any local checkpoint (4-bit and all)."""

from __future__ import annotations

import os
import random
from pathlib import Path

TINY_MODEL = "builtin:tiny-phi"
TINY_DATASET = "builtin:tiny-nli"
TINY_PROMPT = "premise : {premise} . hypothesis : {hypothesis} . answer :"
TINY_LABEL_WORDS = (" entailment", " neutral", " contradiction")
_VERSION = "v1"
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


def cache_dir() -> Path:
    root = os.environ.get("NLI_QLORA_CACHE") or Path.home() / ".cache" / "nli_qlora"
    return Path(root)


def build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>",
                                   clean_up_tokenization_spaces=False)


def tiny_phi_config():
    from transformers import PhiConfig

    vocab_size = -(-len(vocabulary()) // 64) * 64
    return PhiConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=128, partial_rotary_factor=0.4,
                     pad_token_id=0, eos_token_id=2, bos_token_id=2, tie_word_embeddings=False)


def materialize() -> str:
    """Write the tiny model and tokenizer once (fixed seed) and return its directory."""
    import torch
    from transformers import PhiForCausalLM

    from nli_qlora.atomic import staged_dir

    path = cache_dir() / f"tiny-phi-{_VERSION}"
    if (path / "COMPLETE").exists():
        return str(path)
    with staged_dir(path) as tmp:
        torch.manual_seed(1234)
        PhiForCausalLM(tiny_phi_config()).save_pretrained(tmp)
        build_tokenizer().save_pretrained(tmp)
    return str(path)
