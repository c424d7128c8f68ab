"""An estimate of a training step's peak GPU memory, from the model's configuration alone.

One job: `estimate_peak_bytes(model_config, run_config, batch_size, seq_len)` returns named byte
counts and their total, so a preflight on a CPU can say whether a batch will fit before a GPU is
rented. Every term counts what the code this project really runs keeps alive (transformers' Phi and
Llama decoder layers, peft's LoRA layers over bitsandbytes 4-bit layers, bitsandbytes' 8-bit AdamW,
`nli_qlora.training.scoring`), so each term's docstring below names the tensors it counts.

Units: bytes. `N = batch_size * seq_len` tokens; `c` = bytes of the compute dtype (2 for bf16).

What the base 4-bit layers save is nothing: bitsandbytes' MatMul4Bit keeps only the packed weight
and dequantizes it again in backward. So the activations that matter are those of the LoRA branches
(peft casts each LoRA input to float32, the adapters' dtype, and saves that copy), the attention
inputs and output, the activation function's saved tensors and the norms' inputs."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from nli_qlora.infra.errors import UserError
from nli_qlora.config import RunConfig
from nli_qlora.model.families import family_of

QUANT_BLOCK = 64  # bitsandbytes 4-bit: one absmax per 64 weights
QUANT_BLOCK2 = 256  # double quantization: one float32 absmax per 256 first-level blocks
ADAM8_BLOCK = 256  # bitsandbytes 8-bit optimizers: one float32 absmax per 256 values and state
ADAM8_MIN_SIZE = 4096  # smaller tensors keep float32 states in bitsandbytes' 8-bit optimizers
PAGED_MIN_SIZE = 100_000  # bitsandbytes pages (CUDA managed memory) only the states of tensors this large
FLAT_ALIGN = 2048  # step_mode fast: each LoRA weight starts on a 2048-value boundary of one flat buffer
CUDA_CONTEXT = 512 * 2**20  # CUDA context, cuBLAS handles and kernels: outside torch's allocator
CUBLAS_WORKSPACE = 64 * 2**20  # cuBLAS(Lt) workspaces torch allocates for forward and backward (measured, H200)
SLACK_FRACTION = 0.10  # the caching allocator reserves about this much above what is allocated
# step_mode fast without checkpointing captures forward+backward once per batch width as CUDA graphs
# sharing one memory pool; blocks of earlier captures stay reserved. On an H200 (scripts/
# check_memory_estimate.py, 2026-11-28) reserved was 1.24x allocated at batch 32 and 1.47x at batch 64
# after captures at 8 and 32: half the per-step memory again covers it.
GRAPH_POOL_FRACTION = 0.5

# Tensors an activation function keeps for backward, in units of its [N, intermediate] input.
# gelu_new is transformers' Python formula 0.5*x*(1+tanh(k*(x+0.044715*x^3))): autograd keeps x
# (for pow), tanh's output, 0.5*x and (1+tanh); gelu_fast's formula keeps seven such tensors;
# fused kernels (F.gelu, F.silu, relu) keep their input only.
ACTIVATION_SAVES = {"gelu_new": 4, "gelu_fast": 7}

TERMS = {
    "quantized_weights": "4-bit packed weights of the quantized linear layers (half a byte each)",
    "quant_constants": "4-bit quantization constants (absmax per 64 weights; 8-bit + float32 per 256 with double quant)",
    "unquantized_params": "embeddings, output head, norms and biases in the compute dtype",
    "lora_params": "LoRA adapter weights in float32 (and their bfloat16 working copies)",
    "lora_grads": "their float32 gradients",
    "optimizer_states": "AdamW states in torch's allocator (8-bit: 2 bytes a parameter + block constants; float32: 8)",
    "optimizer_states_paged": "AdamW states bitsandbytes pages into CUDA managed memory (not seen by torch)",
    "activations": "tensors autograd keeps from forward to backward, all layers",
    "recompute": "with gradient checkpointing: one layer's activations, recomputed during backward",
    "logits": "output-head logits: the answer position only (label/answer losses) or all positions (lm)",
    "backward_workspace": "gradients in flight while one layer runs backward",
    "dequant_workspace": "the largest quantized weight dequantized to the compute dtype for one matmul",
    "cublas_workspace": "cuBLAS workspaces, allocated through torch's allocator",
    "cuda_context": "CUDA context and library handles (not seen by torch's allocator)",
    "allocator_slack": "caching-allocator blocks reserved above what is allocated (CUDA-graph pools included)",
}


@dataclass(frozen=True)
class Linear:
    name: str
    fan_in: int
    fan_out: int
    group: str  # linears that read the same input tensor share a group


@dataclass(frozen=True)
class ModelShape:
    """The few numbers of a decoder-only configuration the estimate needs."""
    family: str  # "phi" (parallel attention + MLP, LayerNorm) or "llama" (sequential, RMSNorm, gated MLP)
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    activation: str
    resid_dropout: float
    tied: bool
    bias: bool
    linears: tuple[Linear, ...]

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        get = lambda *names, default=None: next((getattr(config, n) for n in names if getattr(config, n, None)
                                                is not None), default)
        hidden = get("hidden_size", "n_embd")
        heads = get("num_attention_heads", "n_head")
        kv = get("num_key_value_heads", default=heads)
        head_dim = get("head_dim", default=hidden // heads)
        inter = get("intermediate_size", "n_inner", default=4 * hidden)
        fam = family_of(getattr(config, "model_type", None))
        family = fam.name
        widths = {"hidden": hidden, "q": heads * head_dim, "kv": kv * head_dim, "inter": inter}
        linears = tuple(Linear(lin.name, widths[lin.fan_in], widths[lin.fan_out], lin.group) for lin in fam.linears)
        if family == "phi":
            bias = True
        else:
            bias = bool(getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False))
        return cls(family=family, hidden=hidden, intermediate=inter, layers=get("num_hidden_layers", "n_layer"),
                   heads=heads, kv_heads=kv, head_dim=head_dim, vocab=config.vocab_size,
                   activation=get("hidden_act", "hidden_activation", default="gelu"),
                   resid_dropout=float(get("resid_pdrop", default=0.0)),
                   tied=bool(getattr(config, "tie_word_embeddings", False)), bias=bias, linears=linears)


_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "auto": 2}  # auto = bfloat16 on a GPU


def adapter_bytes(cfg: RunConfig) -> int:
    """Bytes of a value the adapters compute with: float32 (peft's default), or 2 with
    --lora-compute-dtype bfloat16 (working copies of the float32 masters)."""
    return _DTYPE_BYTES[getattr(cfg, "lora_compute_dtype", "float32")]


def lora_targets(shape: ModelShape, cfg: RunConfig) -> tuple[list[Linear], bool]:
    """(per-layer linears that get adapters, whether the output head gets one), by last name part."""
    wanted = set(cfg.target_modules)
    return [lin for lin in shape.linears if lin.name in wanted], "lm_head" in wanted


def lora_parameter_count(shape: ModelShape, cfg: RunConfig) -> int:
    targets, head = lora_targets(shape, cfg)
    per_layer = sum(cfg.lora_r * (lin.fan_in + lin.fan_out) for lin in targets)
    return shape.layers * per_layer + (cfg.lora_r * (shape.hidden + shape.vocab) if head else 0)


def _lora_tensor_sizes(shape: ModelShape, cfg: RunConfig) -> list[int]:
    """Sizes of the tensors the optimizer steps: each LoRA weight, or in step_mode fast the one flat
    buffer that holds them all (nli_qlora.training.step.FlatParams)."""
    targets, head = lora_targets(shape, cfg)
    sizes = [n for lin in targets for n in (cfg.lora_r * lin.fan_in, cfg.lora_r * lin.fan_out)] * shape.layers
    sizes += [cfg.lora_r * shape.hidden, cfg.lora_r * shape.vocab] if head else []
    if getattr(cfg, "step_mode", "eager") == "fast":
        return [sum(-(-n // FLAT_ALIGN) * FLAT_ALIGN for n in sizes)]
    return sizes


def four_bit_base(cfg: RunConfig) -> bool:
    """Whether training computes from packed 4-bit weights (dequantized in every pass)."""
    return cfg.quantization != "none" and not cfg.dequantize_base


def weight_terms(shape: ModelShape, cfg: RunConfig) -> dict[str, int]:
    """Resident weights.

    quantized_weights: every linear of every decoder layer packed two weights a byte (bitsandbytes
        Params4bit); the output head is never quantized (transformers and `random:` skip it).
    quant_constants: one absmax per 64 weights, float32 (4 bytes) without double quantization; with
        it, one uint8 per block plus one float32 per 256 blocks (QLoRA's double quantization).
    unquantized_params: token embeddings and the output head (once when tied), the norms' weights
        and the linears' biases, all in the compute dtype; with --quantization none, every linear too,
        and so with --dequantize-base (nli_qlora.model.dequantize: the 4-bit weights' values, kept in
        the compute dtype, the packed weights freed)."""
    c = _DTYPE_BYTES[cfg.compute_dtype]
    per_layer = sum(lin.fan_in * lin.fan_out for lin in shape.linears)
    linear_params = shape.layers * per_layer
    biases = shape.layers * sum(lin.fan_out for lin in shape.linears) if shape.bias else 0
    norms = (2 * shape.layers + 1) * shape.hidden * (2 if shape.family == "phi" else 1)
    embed = shape.vocab * shape.hidden * (1 if shape.tied else 2) + (shape.vocab if shape.family == "phi" else 0)
    if not four_bit_base(cfg):
        return {"quantized_weights": 0, "quant_constants": 0,
                "unquantized_params": (linear_params + biases + norms + embed) * c}
    blocks = sum(math.ceil(lin.fan_in * lin.fan_out / QUANT_BLOCK) for lin in shape.linears) * shape.layers
    if cfg.double_quant:
        constants = blocks + 4 * math.ceil(blocks / QUANT_BLOCK2) + shape.layers * len(shape.linears) * 256 * 4
    else:
        constants = 4 * blocks
    return {"quantized_weights": math.ceil(linear_params / 2), "quant_constants": constants,
            "unquantized_params": (biases + norms + embed) * c}


def training_state_terms(shape: ModelShape, cfg: RunConfig) -> dict[str, int]:
    """LoRA weights, gradients and optimizer states.

    lora_params / lora_grads: peft keeps adapters in float32 over a bf16/fp16 base (4 bytes each);
        gradients are float32 too and all exist at the end of backward (step_mode fast keeps them in
        one flat buffer for the whole run). --lora-compute-dtype bfloat16 adds a bfloat16 working
        copy of each (2 bytes more a weight, 2 more a gradient: nli_qlora.training.step.FlatParams),
        and --fused-projections a staging copy the working copies are gathered from (2 bytes more a weight).
    optimizer_states: bitsandbytes' 8-bit AdamW keeps two uint8 states per parameter plus a float32
        absmax per 256 values for each state; tensors under 4,096 values keep float32 states (8 bytes).
        torch's AdamW keeps two float32 states (8 bytes).
    optimizer_states_paged: the paged optimizer puts the two states of tensors of 100,000 values or
        more in CUDA managed memory, which torch.cuda.max_memory_allocated does not see but the card
        holds while they are in use; their absmax constants stay in torch's allocator."""
    sizes = _lora_tensor_sizes(shape, cfg)
    n = sum(sizes)
    torch_bytes = paged = 0
    for size in sizes:
        if cfg.optimizer == "adamw" or size < ADAM8_MIN_SIZE:
            states, constants = 8 * size, 0
        else:
            states, constants = 2 * size, 8 * math.ceil(size / ADAM8_BLOCK)
        if cfg.optimizer == "paged_adamw_8bit" and size >= PAGED_MIN_SIZE:
            paged += states
            torch_bytes += constants
        else:
            torch_bytes += states + constants
    work = adapter_bytes(cfg) if adapter_bytes(cfg) != 4 else 0
    staging = work if cfg.fused_projections and cfg.step_mode == "fast" else 0  # FlatParams' work_order
    return {"lora_params": (4 + work + staging) * n, "lora_grads": (4 + work) * n, "optimizer_states": torch_bytes,
            "optimizer_states_paged": paged}


def norm_bytes(shape: ModelShape, cfg: RunConfig, n: int, device: str, compiled: bool = False) -> int:
    """What one norm keeps for backward over n tokens: LayerNorm (Phi) its input and float32 mean and
    rstd; transformers' RMSNorm a float32 copy of its input and the float32 rsqrt; compiled, or with
    --fused-norm on CUDA (torch's fused rms_norm; on a CPU it decomposes into transformers'
    operations), its input in the compute dtype and the rsqrt."""
    c = _DTYPE_BYTES[cfg.compute_dtype]
    if shape.family == "phi":
        return n * shape.hidden * c + 8 * n
    fused = compiled or (getattr(cfg, "fused_norm", False) and device == "cuda")
    return (n * shape.hidden * c if fused else 4 * n * shape.hidden) + 4 * n


def layer_activation_bytes(shape: ModelShape, cfg: RunConfig, batch_size: int, seq_len: int,
                           device: str = "cuda", input_grad: bool = True) -> tuple[int, bool]:
    """(bytes autograd keeps for one decoder layer between its forward and its backward, whether
    the layer's output requires grad).

    Autograd keeps a tensor only for an operation with an input that requires grad. The base
    weights are frozen, so without gradient checkpointing the first layer's input (the embedding)
    does not, and that layer keeps only what its LoRA branches make: `input_grad` says which case.

    Counted (N tokens, H hidden, I intermediate, c compute bytes):
      norms: LayerNorm keeps its input (N*H*c) and float32 mean and rstd; Llama's RMSNorm keeps its
        float32 copy of the input (N*H*4) and the float32 rsqrt.
      attention: the query and key after rotary embedding, the value, the output (4 x N*H*c) and the
        float32 log-sum-exp that SDPA keeps; grouped key/value heads at their own count: the scorer
        gives no mask, so transformers hands them to SDPA grouped (enable_gqa) on CUDA as on a CPU
        instead of repeating them to the query heads (measured on an H200, thirteenth round). SDPA
        keeps no T x T matrix.
      LoRA, per adapted linear of input width d: peft casts the input to the adapters' dtype (a
        bytes: 4 for float32, 2 with --lora-compute-dtype bfloat16) and the dropout's output (N*d*a)
        is what lora_A keeps, plus the dropout mask (one byte per value on CUDA, a mask of the
        input's dtype on CPU) when the input requires grad, plus lora_A's output (N*r*a) that lora_B
        keeps. When the adapters compute in the compute dtype and there is no dropout, lora_A keeps
        the shared input itself, once per input.
      base 4-bit linears: nothing (bitsandbytes keeps the packed weight only).
      MLP: Phi's gelu_new keeps four N*I tensors (see ACTIVATION_SAVES), a fused activation one; a
        gated MLP (Llama) also keeps the factors of act(gate) * up.
      residual dropout (Phi's resid_pdrop, on the attention and the MLP outputs): a mask each.
      --compile (inductor's partitioner recomputes cheap pointwise work in the backward instead of
        keeping it): the activation function keeps its input only (Phi's gelu_new: one N*I tensor,
        not four), a gated MLP keeps gate and up but not act(gate), and RMSNorm its input in the
        compute dtype, not a float32 copy (as --fused-norm's rms_norm does on CUDA: norm_bytes).
        Measured on an H200 within 5% (Phi-2 at 8-64 x 64 tokens, 4-bit and dequantized; SmolLM2 at
        16 and 128 x 128), where the uncompiled count was 12-55% over."""
    n = batch_size * seq_len
    c = _DTYPE_BYTES[cfg.compute_dtype]
    a = adapter_bytes(cfg)
    h, inter = shape.hidden, shape.intermediate
    compiled = getattr(cfg, "compile", False)
    mask_bytes = lambda dtype_bytes: 1 if device == "cuda" else dtype_bytes
    targets, _ = lora_targets(shape, cfg)
    adapted = {lin.name for lin in targets}
    total = 0

    def lora(group: str, grad: bool, input_kept: bool = False) -> int:
        """The LoRA branches that read one input tensor (`input_kept`: something else keeps it)."""
        lins = [t for t in targets if t.group == group]
        if not lins:
            return 0
        out = a * n * cfg.lora_r * len(lins)  # lora_A's outputs, kept by lora_B
        if c == a and cfg.lora_dropout == 0:  # no cast, no dropout: lora_A keeps the shared input
            return out + (0 if input_kept else a * n * lins[0].fan_in)
        per_value = a + (mask_bytes(a) if cfg.lora_dropout > 0 and grad else 0)
        return out + sum(per_value * n * lin.fan_in for lin in lins)

    def norm(grad: bool) -> int:
        return norm_bytes(shape, cfg, n, device, compiled) if grad else 0

    def attention(grad_in: bool) -> bool:
        nonlocal total
        total += lora("norm1", grad_in)
        grad = grad_in or bool(adapted & {"q_proj", "k_proj", "v_proj"})
        if grad:
            # key and value at their own head count: no mask, so SDPA takes them grouped (enable_gqa)
            total += (2 * shape.heads + 2 * shape.kv_heads) * n * shape.head_dim * c + 4 * batch_size * shape.heads * seq_len
        total += lora("attn_out", grad, input_kept=grad)  # SDPA's output, in the layout o_proj reads
        return grad or bool(adapted & {"dense", "o_proj"})

    x_grad = input_grad
    total += norm(x_grad)
    act = 1 if compiled else ACTIVATION_SAVES.get(shape.activation, 1)
    if shape.family == "phi":  # parallel: attention and MLP both read the one LayerNorm's output
        attn_grad = attention(x_grad)
        up_grad = x_grad or "fc1" in adapted
        total += act * n * inter * c if up_grad else 0
        total += lora("mlp_mid", up_grad)
        mlp_grad = up_grad or "fc2" in adapted
        total += (attn_grad + mlp_grad) * n * h * mask_bytes(c) if shape.resid_dropout > 0 else 0
        out_grad = x_grad or attn_grad or mlp_grad
    else:  # sequential: norm, attention, residual, norm, gated MLP, residual
        attn_grad = attention(x_grad)
        mid_in = x_grad or attn_grad
        total += norm(mid_in)
        total += lora("norm2", mid_in)
        gate_grad, up_grad = mid_in or "gate_proj" in adapted, mid_in or "up_proj" in adapted
        if compiled:  # one fused kernel keeps gate (for act's gradient and act(gate)) and up; act(gate) is recomputed
            total += n * inter * c * ((gate_grad or up_grad) + gate_grad)
        else:
            total += act * n * inter * c if gate_grad else 0  # the activation keeps gate's output
            total += n * inter * c * (up_grad + gate_grad)  # act(gate) * up keeps each factor the other needs
        total += lora("mlp_mid", gate_grad or up_grad)
        out_grad = mid_in or gate_grad or up_grad or "down_proj" in adapted
    return total, out_grad


def _head_bytes(shape: ModelShape, cfg: RunConfig, batch_size: int, seq_len: int, device: str) -> int:
    """Output-head memory: the logits and what cross-entropy keeps.

    label/answer losses project the answer position only: B rows of vocabulary logits in the compute
    dtype, their float32 copy and log-softmax. The lm loss projects every position: the float32
    logits, the shifted copy cross-entropy reads, its saved log-softmax, and the float32 gradient,
    each N x V x 4 bytes, plus the compute-dtype logits."""
    c = _DTYPE_BYTES[cfg.compute_dtype]
    rows = batch_size * seq_len if cfg.loss == "lm" else batch_size
    per_row = shape.vocab * (c + 4 * 4 if cfg.loss == "lm" else c + 4 + 4)
    _, head = lora_targets(shape, cfg)
    a = adapter_bytes(cfg)
    mask = (1 if device == "cuda" else a) if cfg.lora_dropout > 0 else 0
    lora = rows * (shape.hidden * (a + mask) + a * cfg.lora_r) if head else 0
    return rows * per_row + lora + rows * shape.hidden * c


def estimate_peak_bytes(model_config, run_config: RunConfig, batch_size: int, seq_len: int,
                        device: str = "cuda") -> dict[str, int]:
    """Peak GPU bytes of one training step of `batch_size` rows (one micro-batch) padded to `seq_len`
    tokens: the terms of TERMS, `allocated` (what torch.cuda.max_memory_allocated would read: all
    but the CUDA context, the allocator's slack and paged optimizer states) and `total` (everything,
    to hold against a card's memory). Measured against a GPU by scripts/check_memory_estimate.py
    (docs/preflight.md: within 10% for Phi-2 at batch 8 to 64, either step mode, with and without
    checkpointing).

    The peak comes at the start of backward: every kept activation is alive and the first layer's
    gradients are being made. With gradient checkpointing each layer keeps only its input
    (N*H*c) and one layer is recomputed at a time. `device="cpu"` counts dropout masks the way the
    CPU kernels store them; it exists to check the activation count against autograd on a CPU."""
    shape = model_config if isinstance(model_config, ModelShape) else ModelShape.from_config(model_config)
    cfg = run_config
    c = _DTYPE_BYTES[cfg.compute_dtype]
    n = batch_size * seq_len
    h, inter = shape.hidden, shape.intermediate
    terms = {**weight_terms(shape, cfg), **training_state_terms(shape, cfg)}
    first, grad = layer_activation_bytes(shape, cfg, batch_size, seq_len, device, input_grad=False)
    rest, _ = layer_activation_bytes(shape, cfg, batch_size, seq_len, device, input_grad=grad)
    every, _ = layer_activation_bytes(shape, cfg, batch_size, seq_len, device, input_grad=True)
    final_norm = norm_bytes(shape, cfg, n, device)  # outside the decoder layers: never compiled
    if cfg.gradient_checkpointing:  # the embedding output requires grad (enable_input_require_grads)
        terms["activations"] = shape.layers * n * h * c + final_norm
        terms["recompute"] = every
    else:
        terms["activations"] = first + (shape.layers - 1) * rest + (final_norm if grad else 0)
        terms["recompute"] = 0
    terms["logits"] = _head_bytes(shape, cfg, batch_size, seq_len, device)
    # one layer's backward: the incoming and outgoing residual gradients, the MLP's intermediate
    # gradients (the activation's backward holds about three N x I tensors) and the adapters'-dtype
    # gradients of the LoRA inputs before they are cast back and summed.
    targets, _ = lora_targets(shape, cfg)
    lora_in = max((lin.fan_in for lin in targets), default=0)
    terms["backward_workspace"] = 2 * n * h * c + 3 * n * inter * c + adapter_bytes(cfg) * n * lora_in
    largest = max(lin.fan_in * lin.fan_out for lin in shape.linears)
    terms["dequant_workspace"] = 0 if not four_bit_base(cfg) else largest * c + 4 * math.ceil(largest / QUANT_BLOCK)
    terms["cublas_workspace"] = CUBLAS_WORKSPACE if device == "cuda" else 0
    paged = terms["optimizer_states_paged"]
    allocated = sum(terms.values()) - paged
    terms["cuda_context"] = CUDA_CONTEXT
    per_step = terms["activations"] + terms["recompute"] + terms["logits"] + terms["backward_workspace"]
    graphs = device == "cuda" and getattr(cfg, "step_mode", "eager") == "fast" and not cfg.gradient_checkpointing
    terms["allocator_slack"] = int(SLACK_FRACTION * allocated + (GRAPH_POOL_FRACTION * per_step if graphs else 0))
    terms["allocated"] = allocated
    terms["total"] = allocated + paged + terms["cuda_context"] + terms["allocator_slack"]
    return terms


_CARDS_GB = {"a40": 48, "a100": 80, "a100-40gb": 40, "h100": 80, "h200": 141, "l4": 24, "t4": 16,
             "a10": 24, "a10g": 24, "l40s": 48, "rtx4090": 24, "4090": 24, "v100": 32}
_UNITS = {"": 10**9, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "g": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_budget(text: str, flag: str = "--memory-budget") -> tuple[int, str]:
    """The one reader of a memory budget, for every command: '48GB' (10^9), '40GiB' (2^30),
    '48000MB', '80' (GB), or a card's name ('A40', 'H100') -> (bytes, label)."""
    raw = str(text).strip()
    key = raw.lower().replace(" ", "")
    if key in _CARDS_GB:
        return _CARDS_GB[key] * 10**9, f"{raw} ({_CARDS_GB[key]} GB)"
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)([a-z]*)", key)
    if not m or m.group(2) not in _UNITS:
        raise UserError(f"{flag}: cannot read {raw!r} as a size or a card name (write e.g. 48GB, 40GiB, A40, H100)")
    value = float(m.group(1))
    if not 0 < value < float("inf"):
        raise UserError(f"{flag}: must be a positive size, got {raw!r}")
    return int(value * _UNITS[m.group(2)]), raw
