"""The label set: class names, the label words whose first tokens are the classes (the verbalizer),
and the parse map from what a data file writes to a class.

It is data, not code: RunConfig holds it (`labels`, `label_words`, `label_map`), so a run's
config.json and every checkpoint carry it, and another data set's label names, or a two-class task,
is a matter of settings. A config.json written before it existed loads as the NLI three-class set."""

from __future__ import annotations

import math
from dataclasses import dataclass

NLI_NAMES = ("entailment", "neutral", "contradiction")  # Hugging Face ClassLabel order 0, 1, 2
NLI_WORDS = (" entailment", " neutral", " contradiction")
UNLABELED = object()  # marker: the row has a label field that says "no gold label" (-1 or '-')
_NO_GOLD = ("-", "", "-1")


@dataclass(frozen=True)
class LabelSet:
    names: tuple[str, ...]  # class i is names[i]: what reports, metrics and prediction rows say
    words: tuple[str, ...]  # one label word per class, in the same order
    aliases: tuple[tuple[str, str], ...] = ()  # (label as a data file writes it, class name), checked first

    def __len__(self) -> int:
        return len(self.names)

    def parse(self, value) -> int | object:
        """A class index, UNLABELED for no gold label (None, NaN, -1, '-', ''), or ValueError.

        A label is an alias, a class name (any case) or a class number 0..n-1, as a number or as text."""
        if value is None or (isinstance(value, float) and math.isnan(value)):  # NaN: a missing int in pandas
            return UNLABELED
        if isinstance(value, bool):
            raise ValueError(f"unknown label {value!r}")
        if isinstance(value, (int, float)) and float(value).is_integer():
            text = str(int(value))
        elif isinstance(value, str):
            text = value.strip().lower()
        else:
            raise ValueError(f"unknown label {value!r}")
        if text in _NO_GOLD:
            return UNLABELED
        for alias, name in self.aliases:
            if text == alias.lower():
                return self.names.index(name)
        if text in self.names:
            return self.names.index(text)
        if text.isdigit() and int(text) < len(self.names):
            return int(text)
        raise ValueError(f"unknown label {value!r}")


NLI = LabelSet(NLI_NAMES, NLI_WORDS)


def parse_label_map(items, names) -> tuple[tuple[str, str], ...]:
    """`TEXT=NAME` settings as aliases; ValueError naming the bad item."""
    out = []
    for item in items:
        text, sep, name = item.partition("=")
        if not sep or not text.strip():
            raise ValueError(f"{item!r} is not TEXT=NAME")
        if name not in names:
            raise ValueError(f"{item!r}: {name!r} is not one of the labels {' '.join(names)}")
        out.append((text.strip(), name))
    return tuple(out)
