"""The one scoring function: hidden state at the answer position -> the label words' logits.

It serves evaluation in the loop, the score CLI, zero-shot baselines and the failure-case
comparison. The vocabulary projection runs only at the answer position (one row per example),
except for the whole-sequence `lm` loss, which needs every position by definition."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nli_qlora.model.attention import kernel_choice


class LabelScorer:
    def __init__(self, model, label_ids: list[int], attention_kernel: str = "flash"):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.model = model
        self.decoder = base.get_decoder()
        self.lm_head = base.get_output_embeddings()
        self.label_ids = torch.tensor(label_ids, device=self.lm_head.weight.device)
        # RunConfig.attention_kernel, around every forward pass (training, its capture, evaluation,
        # scoring); outside the decoder layers, which --compile compiles, so that they trace it
        self.attention = kernel_choice(attention_kernel, self.lm_head.weight.device)

    def hidden(self, batch: dict) -> torch.Tensor:
        """Final hidden states of every position, [B, T, H].

        No attention mask is passed, on purpose: batches are right-padded, so under the causal mask
        a real token never attends to a pad (pads only come after it). Every position a loss or a
        score reads is exactly what a padding mask would give, and attention runs as plain causal
        SDPA (flash kernels, no mask tensor, no data-dependent host check: CUDA-graph safe)."""
        with self.attention():
            return self.decoder(input_ids=batch["input_ids"]).last_hidden_state

    def answer_logits(self, batch: dict) -> torch.Tensor:
        """Full-vocabulary logits at the answer position only, [B, V], float32."""
        h = self.hidden(batch)
        rows = torch.arange(h.shape[0], device=h.device)
        return self.lm_head(h[rows, batch["answer_pos"]]).float()

    def label_logits(self, batch: dict) -> torch.Tensor:
        """The label words' logits at the answer position, [B, classes]: the prediction is their argmax."""
        return self.answer_logits(batch)[:, self.label_ids]

    def loss(self, batch: dict, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss, label logits [B, classes]) for the training loss `kind`.

        label:  cross-entropy over the label logits (the classifier the scorer is);
        answer: cross-entropy over the full vocabulary for the answer's first token;
        lm:     the naive recipe, language-model loss over the whole sequence with its answer."""
        labels = batch["labels"]
        if kind == "label":
            logits3 = self.label_logits(batch)
            return F.cross_entropy(logits3, labels), logits3
        if kind == "answer":
            vocab = self.answer_logits(batch)
            return F.cross_entropy(vocab, self.label_ids[labels]), vocab[:, self.label_ids]
        if kind == "lm":
            h = self.hidden(batch)
            logits = self.lm_head(h).float()
            targets = batch["lm_labels"][:, 1:]
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
            rows = torch.arange(h.shape[0], device=h.device)
            return loss, logits[rows, batch["answer_pos"]][:, self.label_ids]
        raise ValueError(f"unknown loss {kind!r}")
