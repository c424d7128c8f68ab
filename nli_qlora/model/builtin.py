"""The built-in model (`builtin:tiny-phi`): a tiny Phi of random weights from a fixed seed and a
word-level tokenizer over the built-in data set's words, written once under the cache directory and
then loaded like any local checkpoint (4-bit and all)."""

from __future__ import annotations

from nli_qlora.data.builtin import vocabulary
from nli_qlora.infra.atomic import staged_dir
from nli_qlora.infra.cache import cache_dir

TINY_MODEL = "builtin:tiny-phi"
_VERSION = "v1"


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

    path = cache_dir() / f"tiny-phi-{_VERSION}"
    if (path / "COMPLETE").exists():
        return str(path)
    with staged_dir(path) as tmp:
        torch.manual_seed(1234)
        PhiForCausalLM(tiny_phi_config()).save_pretrained(tmp)
        build_tokenizer().save_pretrained(tmp)
    return str(path)
