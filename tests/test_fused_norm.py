"""--fused-norm: every Llama-style RMSNorm computed by torch's rms_norm gives transformers' outputs and
input gradients (real transformers models), other norms keep their own forward, and the memory
estimate counts what the fused norm keeps."""

import copy

import pytest
import torch

from nli_qlora.config import RunConfig
from nli_qlora.model.fused_norm import computes_rms_norm, fuse_norms_, fused_norm_count
from tests.test_memory import _tiny_config, activation_bytes


def _llama(dtype=torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5)
    model = LlamaForCausalLM(config).to(dtype)
    with torch.no_grad():  # norm weights of no special value (they start as ones)
        for m in model.modules():
            if type(m).__name__.endswith("RMSNorm"):
                m.weight.uniform_(0.5, 1.5)
    return model


def _outputs(model, embeds):
    embeds = embeds.clone().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits
    logits.float().square().mean().backward()
    return logits.detach().float(), embeds.grad.float()


def test_every_norm_of_a_llama_is_fused_and_computes_the_same():
    plain = _llama()
    fused = copy.deepcopy(plain)
    assert fuse_norms_(fused) == 2 * 2 + 1 == fused_norm_count(fused)  # two a layer and the final one
    assert fused_norm_count(plain) == 0
    embeds = torch.randn(3, 7, 64, generator=torch.Generator().manual_seed(2))
    (la, ga), (lb, gb) = _outputs(plain, embeds), _outputs(fused, embeds)
    torch.testing.assert_close(lb, la, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gb, ga, rtol=1e-5, atol=1e-6)


def test_bfloat16_norms_agree_within_one_rounding():
    """transformers rounds to bfloat16 before the weight multiplies, the fused call once after it."""
    plain = _llama(torch.bfloat16)
    fused = copy.deepcopy(plain)
    fuse_norms_(fused)
    norm, fused_norm = plain.model.norm, fused.model.norm
    x = torch.randn(4, 9, 64, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    a, b = norm(x).float(), fused_norm(x).float()
    assert b.dtype == torch.float32 and fused_norm(x).dtype == torch.bfloat16
    torch.testing.assert_close(b, a, rtol=2 ** -7, atol=1e-2)  # bfloat16 keeps 8 significant bits
    exact = (x.float() * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + 1e-5) * norm.weight.float())
    assert (b - exact).abs().max() <= (a - exact).abs().max()  # rounded once: no further from the exact value


def test_a_float32_input_to_bfloat16_norm_keeps_transformers_dtype():
    """A norm whose input is not in its weight's dtype runs transformers' own forward (which returns
    the weight's dtype there), so the fused path never changes a dtype."""
    plain = _llama(torch.bfloat16)
    fused = copy.deepcopy(plain)
    fuse_norms_(fused)
    x = torch.randn(2, 5, 64)
    assert fused.model.norm(x).dtype == plain.model.norm(x).dtype
    torch.testing.assert_close(fused.model.norm(x), plain.model.norm(x))


def test_norms_of_another_formula_keep_their_own_forward():
    """Gemma's RMSNorm scales by (1 + weight): its class fails the check and is not replaced; LayerNorm
    (Phi) is no RMSNorm; Qwen2's RMSNorm is Llama's formula and is."""
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm
    gemma, qwen = GemmaRMSNorm(16, eps=1e-6), Qwen2RMSNorm(16, eps=1e-6)
    assert not computes_rms_norm(gemma) and computes_rms_norm(qwen)
    model = torch.nn.Sequential(gemma, torch.nn.LayerNorm(16), qwen)
    weights = [p.clone() for p in model.parameters()]
    assert fuse_norms_(model) == 1 and fused_norm_count(model) == 1
    assert "forward" not in vars(gemma) and "forward" in vars(qwen)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))  # the check restores weights


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="the fused kernel runs on CUDA only"))])
def test_activation_count_with_fused_norms(device):
    """On CUDA the fused norm keeps its input (compute dtype) and the float32 rsqrt; on a CPU rms_norm
    decomposes into transformers' operations and keeps the float32 copy: the estimate counts both,
    the final norm's included. On the H200 this model kept 1,878,048 bytes, which first showed that
    SDPA takes the grouped key/value heads unrepeated there too (no mask): the count is 1,873,920."""
    cfg = RunConfig(model="x", lora_dropout=0.05, compute_dtype="bfloat16", lora_compute_dtype="bfloat16",
                    fused_norm=True, gradient_checkpointing=False)
    config = _tiny_config("llama")  # grouped key/value heads (4 and 2), as SmolLM2's (9 and 3)
    measured, estimated, model = activation_bytes(config, cfg, device)
    assert fused_norm_count(model) == 2 * config.num_hidden_layers + 1
    assert estimated == pytest.approx(measured, rel=0.01)


def test_fusing_off_puts_transformers_forward_back():
    """The benchmarks reuse one model across cases, each turning the option on or off."""
    model = _llama()
    x = torch.randn(2, 5, 64)
    before = model.model.norm(x)
    assert fuse_norms_(model) == 5
    fuse_norms_(model, on=False)
    assert fused_norm_count(model) == 0 and not any("forward" in vars(m) for m in model.modules())
    assert torch.equal(model.model.norm(x), before)
