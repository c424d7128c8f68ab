"""One place per model family for the linear layers of its decoder layer: what the `phi` target
alias and the published target list name, and what the memory estimate (tools.memory) counts.

A new family with its own layer names is one Family here and one entry in MODEL_TYPES."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Linear:
    name: str  # the module's last name part: what --target-modules matches
    fan_in: str  # a width of the configuration: hidden, q (query heads), kv (key/value heads), inter
    fan_out: str
    group: str  # linears that read the same input tensor share a group


@dataclass(frozen=True)
class Family:
    name: str
    linears: tuple[Linear, ...]

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(lin.name for lin in self.linears)


# Phi: attention and MLP in parallel on one LayerNorm's output
PHI = Family("phi", (Linear("q_proj", "hidden", "q", "norm1"), Linear("k_proj", "hidden", "kv", "norm1"),
                     Linear("v_proj", "hidden", "kv", "norm1"), Linear("dense", "q", "hidden", "attn_out"),
                     Linear("fc1", "hidden", "inter", "norm1"), Linear("fc2", "inter", "hidden", "mlp_mid")))
# Llama and its kin: attention, then a gated MLP, each after its own RMSNorm
LLAMA = Family("llama", (Linear("q_proj", "hidden", "q", "norm1"), Linear("k_proj", "hidden", "kv", "norm1"),
                         Linear("v_proj", "hidden", "kv", "norm1"), Linear("o_proj", "q", "hidden", "attn_out"),
                         Linear("gate_proj", "hidden", "inter", "norm2"), Linear("up_proj", "hidden", "inter", "norm2"),
                         Linear("down_proj", "inter", "hidden", "mlp_mid")))

MODEL_TYPES = {"phi": PHI, "llama": LLAMA, "mistral": LLAMA, "qwen2": LLAMA, "qwen3": LLAMA}  # counted exactly

PHI_TARGETS = PHI.targets
PUBLISHED_TARGETS = LLAMA.targets + ("lm_head",)  # the published recipe's list (written for Llama-style names)
TARGET_ALIASES = {"phi": PHI_TARGETS}  # --target-modules phi


def family_of(model_type: str | None) -> Family:
    """The family of a transformers model_type; an unknown one is counted as a Llama-style decoder."""
    return MODEL_TYPES.get(model_type or "", LLAMA)
