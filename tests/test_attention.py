"""Causal SDPA without a mask tensor (nli_qlora.model.attention): what a CUDA-graph capture sees.

transformers treats a stream capture as tracing: it cannot read the position ids there, so for
the "sdpa" implementation it builds a packed-sequence mask. torch.compile's tracing takes the same
branch on a CPU, so it stands in for the capture here."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers.masking_utils import create_causal_mask

from nli_qlora.config import preset
from nli_qlora.model.attention import NAME
from nli_qlora.model.bundle import load_bundle, with_lora

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bundle():
    b = with_lora(load_bundle(preset("tiny"), CPU))
    b.model.eval()
    return b


def _decoder(bundle):
    return bundle.model.get_base_model().get_decoder()


def _traced_mask(decoder, rows: int, length: int):
    """The mask create_causal_mask gives the decoder's layers for the scorer's input, traced."""
    x = torch.zeros(rows, length, decoder.config.hidden_size)
    positions = torch.arange(length)[None]  # what the decoder passes when the scorer gives none
    make = lambda x: create_causal_mask(config=decoder.config, inputs_embeds=x, attention_mask=None,  # noqa: E731
                                        past_key_values=None, position_ids=positions)
    torch._dynamo.reset()
    return torch.compile(make, backend="eager", fullgraph=False)(x)


def test_models_load_with_the_causal_attention_and_compute_what_sdpa_computes(bundle):
    decoder = _decoder(bundle)
    assert decoder.config._attn_implementation == NAME
    ids = torch.randint(3, 40, (3, 12), generator=torch.Generator().manual_seed(0))
    padding = torch.ones(3, 12, dtype=torch.long)
    padding[0, :5] = 0  # a left-padded row, as generation pads: the padding mask must still apply
    try:
        with torch.no_grad():
            ours = [decoder(input_ids=ids).last_hidden_state, decoder(input_ids=ids, attention_mask=padding).last_hidden_state]
            bundle.model.set_attn_implementation("sdpa")
            sdpa = [decoder(input_ids=ids).last_hidden_state, decoder(input_ids=ids, attention_mask=padding).last_hidden_state]
    finally:
        bundle.model.set_attn_implementation(NAME)
    assert torch.equal(ours[0], sdpa[0]) and torch.equal(ours[1], sdpa[1])
    assert not torch.equal(ours[0][0], ours[1][0])  # the padding mask did change the padded row


def test_generation_with_a_cache_and_padding_generates_what_sdpa_generates(bundle):
    """bench_score's generate-and-parse baseline runs on models loaded here: cached, padded decoding."""
    ids = torch.randint(3, 40, (3, 12), generator=torch.Generator().manual_seed(1))
    padding = torch.ones(3, 12, dtype=torch.long)
    padding[0, :5] = 0
    kw = dict(attention_mask=padding, max_new_tokens=5, do_sample=False, use_cache=True,
              pad_token_id=bundle.tokenizer.pad_token_id)
    try:
        with torch.no_grad():
            ours = bundle.model.generate(input_ids=ids, **kw)
            bundle.model.set_attn_implementation("sdpa")
            sdpa = bundle.model.generate(input_ids=ids, **kw)
    finally:
        bundle.model.set_attn_implementation(NAME)
    assert torch.equal(ours, sdpa)


def test_traced_like_a_capture_the_causal_attention_builds_no_mask(bundle):
    decoder = _decoder(bundle)
    assert _traced_mask(decoder, 4, 16) is None  # SDPA runs is_causal, the flash kernel on a GPU
    bundle.model.set_attn_implementation("sdpa")
    try:
        mask = _traced_mask(decoder, 4, 16)
    finally:
        bundle.model.set_attn_implementation(NAME)
    assert mask is not None and tuple(mask.shape) == (4, 1, 16, 16)  # what the captured step built before


def test_eager_attention_stays_eager():
    b = load_bundle(dataclasses.replace(preset("tiny"), attn_implementation="eager"), CPU)
    assert b.model.config._attn_implementation == "eager"
