"""The one scoring function and the three losses, on a real 4-bit LoRA tiny Phi model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from nli_qlora.data.batches import collate, encode
from nli_qlora.config import preset
from nli_qlora.data.read import Example
from nli_qlora.training.evaluate import predict
from nli_qlora.model.load import attach_lora, load_base_model, load_tokenizer, match_targets, resolve_source
from nli_qlora.training.optim import build_optimizer, build_scheduler
from nli_qlora.data.prompt import label_token_ids
from nli_qlora.training.scoring import LabelScorer
from nli_qlora.training.step import build_trainer, train_step
from nli_qlora.data.builtin import tiny_split

CFG = dataclasses.replace(preset("tiny"), lr_schedule="constant", warmup_steps=0)  # a few steps at full rate
LOSSES = ("label", "answer", "lm")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_source(CFG))


@pytest.fixture(scope="module")
def label_ids(tokenizer):
    return label_token_ids(tokenizer, CFG.label_words)


@pytest.fixture(scope="module")
def rows(tokenizer):
    """48 tiny-NLI rows of varied lengths."""
    examples = [Example(r["premise"], r["hypothesis"], r["label"], i + 1) for i, r in enumerate(tiny_split("train")[:48])]
    encoded, _ = encode(examples, tokenizer, CFG.prompt_template, CFG.max_length, "tiny")
    assert len({len(r.prompt_ids) for r in encoded}) > 3
    return encoded


def answer_ids(tokenizer) -> list[list[int]]:
    """The lm loss's answers: each label word's tokens, then end of sequence (as the loop builds them)."""
    return [tokenizer.encode(w, add_special_tokens=False) + [tokenizer.eos_token_id] for w in CFG.label_words]


def fresh_scorer(label_ids) -> LabelScorer:
    """A new 4-bit tiny Phi with freshly initialised LoRA adapters (lm_head's B is zero, so perturb it a
    little: otherwise every adapter starts as the identity and the scores equal the base model's)."""
    model = load_base_model(CFG, resolve_source(CFG), torch.device("cpu"), torch.float32)
    matched, _ = match_targets(model, CFG.target_modules)
    model = attach_lora(model, CFG, matched)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    model.train()
    return LabelScorer(model, label_ids)


@pytest.fixture(scope="module")
def scorer(label_ids):
    return fresh_scorer(label_ids)


def batch_of(rows, tokenizer, kind: str, pad_multiple: int = 16) -> dict:
    return collate(rows, tokenizer.pad_token_id, pad_multiple, answer_ids(tokenizer) if kind == "lm" else None)


# --- the scoring function -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", LOSSES)
def test_each_loss_is_finite_and_gives_label_logits_of_shape_b_by_3(scorer, rows, tokenizer, kind):
    batch = batch_of(rows[:8], tokenizer, kind)
    loss, logits3 = scorer.loss(batch, kind)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    assert logits3.shape == (8, 3) and logits3.dtype == torch.float32
    assert torch.allclose(logits3, scorer.label_logits(batch), atol=1e-5)


def test_label_loss_is_cross_entropy_of_the_scoring_functions_label_logits(scorer, rows, tokenizer):
    batch = batch_of(rows[:8], tokenizer, "label")
    loss, _ = scorer.loss(batch, "label")
    assert torch.allclose(loss, F.cross_entropy(scorer.label_logits(batch), batch["labels"]), atol=1e-6)


def test_answer_loss_is_full_vocabulary_cross_entropy_on_the_label_words_first_token(scorer, rows, tokenizer,
                                                                                      label_ids):
    batch = batch_of(rows[:8], tokenizer, "answer")
    loss, _ = scorer.loss(batch, "answer")
    vocab = scorer.answer_logits(batch)
    assert vocab.shape == (8, scorer.lm_head.out_features)
    expected = F.cross_entropy(vocab, torch.tensor(label_ids)[batch["labels"]])
    assert torch.allclose(loss, expected, atol=1e-6)


def test_lm_loss_equals_the_models_own_causal_lm_loss(scorer, rows, tokenizer):
    """The naive recipe's loss, as transformers computes it from `labels`, over prompt and answer."""
    batch = batch_of(rows[:8], tokenizer, "lm")
    loss, _ = scorer.loss(batch, "lm")
    with torch.no_grad():
        reference = scorer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 labels=batch["lm_labels"]).loss
    assert torch.allclose(loss, reference, atol=1e-5)


def test_label_logits_are_the_models_own_logits_at_the_answer_position(scorer, rows, tokenizer, label_ids):
    batch = batch_of(rows[:8], tokenizer, "label")
    with torch.no_grad():
        full = scorer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ours = scorer.label_logits(batch)
    expected = full[torch.arange(8), batch["answer_pos"]][:, label_ids]
    assert torch.allclose(ours, expected, atol=1e-5)


@pytest.mark.parametrize("kind,per_row", [("label", True), ("answer", True), ("lm", False)])
def test_the_vocabulary_projection_runs_only_at_the_answer_position_except_for_lm(scorer, rows, tokenizer, kind,
                                                                                  per_row):
    batch = batch_of(rows[:8], tokenizer, kind)
    shapes = []
    handle = scorer.lm_head.register_forward_hook(lambda mod, args, out: shapes.append(tuple(args[0].shape)))
    try:
        scorer.loss(batch, kind)
    finally:
        handle.remove()
    hidden = scorer.lm_head.in_features
    width = batch["input_ids"].shape[1]
    assert shapes == ([(8, hidden)] if per_row else [(8, width, hidden)])


def test_predictions_do_not_depend_on_padding_or_batch_company(scorer, rows, tokenizer):
    """What bucketing relies on: a row's logits alone (no padding) equal its logits in a batch padded
    to another row's length and a multiple of 16."""
    scorer.model.eval()
    try:
        with torch.no_grad():
            together = scorer.label_logits(batch_of(rows, tokenizer, "label", pad_multiple=16))
            alone = torch.cat([scorer.label_logits(batch_of([r], tokenizer, "label", pad_multiple=1)) for r in rows])
            reversed_ = scorer.label_logits(batch_of(rows[::-1], tokenizer, "label", pad_multiple=64)).flip(0)
    finally:
        scorer.model.train()
    assert together.shape == (len(rows), 3)
    assert torch.allclose(alone, together, atol=1e-4), (alone - together).abs().max()
    assert torch.allclose(reversed_, together, atol=1e-4)


def test_evaluation_order_and_batch_size_do_not_change_predictions(scorer, rows, tokenizer):
    one = predict(scorer, rows, 1, tokenizer.pad_token_id, 1)
    many = predict(scorer, rows, 32, tokenizer.pad_token_id, 16)
    assert many.shape == (len(rows), 3)
    assert abs(one - many).max() < 1e-4
    assert scorer.model.training, "predict restores training mode"


def sdpa_state() -> tuple:
    """What SDPA may run now: (cuDNN's allowed, flash's allowed, the backends in priority order)."""
    from torch.nn.attention import _cur_sdpa_kernel_backends
    return (torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.flash_sdp_enabled(),
            tuple(_cur_sdpa_kernel_backends(with_priority=True)))


def test_on_a_gpu_every_forward_pass_runs_with_cudnns_attention_off_and_flash_first(scorer, rows, tokenizer):
    """RunConfig.attention_kernel "flash", the default: the scorer's forward passes run with cuDNN's kernel
    off and flash first, and torch's priority order untouched (on Hopper torch sets it at the first SDPA
    call; a choice that restored the order it found would undo that for the rest of the process). The
    choice applies to CUDA tensors; here the CUDA context is made for a CUDA device (torch.device needs no
    GPU) and the decoder runs inside it on the CPU. Which kernel a GPU then runs is the GPU smoke's check."""
    from torch.nn.attention import SDPBackend
    from nli_qlora.model.attention import kernel_choice
    seen, orders = [], []

    def note(module, args):
        seen.append(sdpa_state())
        orders.append(torch._C._get_sdp_priority_order())

    hook = scorer.decoder.layers[0].register_forward_pre_hook(note)
    torch_order = torch._C._get_sdp_priority_order()
    hopper = [int(SDPBackend.CUDNN_ATTENTION)] + [b for b in torch_order if b != int(SDPBackend.CUDNN_ATTENTION)]
    torch._C._set_sdp_priority_order(hopper)  # torch's order on Hopper, where cuDNN's kernel comes first
    before, order_before = sdpa_state(), torch._C._get_sdp_priority_order()
    batch = batch_of(rows[:4], tokenizer, "label")
    try:
        with torch.no_grad():
            plain = scorer.label_logits(batch)  # a CPU model: nothing is chosen on a CPU
            kept = scorer.attention
            scorer.attention = kernel_choice("flash", torch.device("cuda"))
            try:
                chosen = scorer.label_logits(batch)
            finally:
                scorer.attention = kept
    finally:
        hook.remove()
        order_after, state_after = torch._C._get_sdp_priority_order(), sdpa_state()
        torch._C._set_sdp_priority_order(torch_order)
    assert seen[0] == before
    cudnn, flash, order = seen[1]
    assert not cudnn and flash and order[0] == SDPBackend.FLASH_ATTENTION
    assert SDPBackend.CUDNN_ATTENTION not in order
    assert orders == [order_before, order_before] and order_after == order_before, \
        "torch's priority order must stay as torch set it"
    assert state_after == before, "the choice must end with the forward pass"
    torch.testing.assert_close(chosen, plain, rtol=0, atol=0)


def test_attention_kernel_auto_leaves_torchs_order_and_unknown_names_are_refused():
    from nli_qlora.config import RunConfig
    from nli_qlora.infra.errors import UserError
    from nli_qlora.model.attention import kernel_choice
    before = sdpa_state()
    with kernel_choice("auto", torch.device("cuda"))():
        assert sdpa_state() == before
    with kernel_choice("flash", torch.device("cpu"))():
        assert sdpa_state() == before
    with pytest.raises(UserError, match="--attention-kernel: must be one of flash, auto"):
        RunConfig(attention_kernel="cudnn").validate()


@pytest.mark.parametrize("step_mode", ["fast", "eager"])
def test_the_attention_choice_holds_where_checkpointing_recomputes_the_forward(label_ids, rows, tokenizer, step_mode):
    """Gradient checkpointing runs each layer's forward again inside the backward pass. Found on an H200:
    the recomputation ran after the scorer's forward had left the choice, picked cuDNN's kernel where the
    forward had run flash, saved tensors of other shapes, and checkpointing stopped the step. The CUDA
    choice is forced here as above; the layer's hook sees the forward and its recomputation."""
    from torch.nn.attention import SDPBackend
    from nli_qlora.model.attention import kernel_choice
    from nli_qlora.model.bundle import enable_checkpointing
    scorer = fresh_scorer(label_ids)
    enable_checkpointing(scorer.model)
    scorer.attention = kernel_choice("flash", torch.device("cuda"))
    params = [p for p in scorer.model.parameters() if p.requires_grad]
    trainer = build_trainer(scorer, params, lambda ps: build_optimizer(CFG, ps)[0],
                            lambda opt: build_scheduler(CFG, opt, 100), "label", CFG.max_grad_norm, step_mode,
                            gradient_checkpointing=True)
    seen = []  # inside the checkpointed layer: its attention module runs in the forward and the recomputation
    hook = scorer.decoder.layers[0].self_attn.register_forward_pre_hook(lambda module, args: seen.append(sdpa_state()))
    try:
        stats = train_step(trainer, [batch_of(rows[:8], tokenizer, "label")])
    finally:
        hook.remove()
    assert not stats["skipped"]
    assert len(seen) == 2, "the forward and its recomputation"
    assert all(not cudnn and order[0] == SDPBackend.FLASH_ATTENTION for cudnn, _, order in seen), seen


# --- training with each loss through the one step --------------------------------------------------------

@pytest.mark.parametrize("step_mode", ["fast", "eager"])
@pytest.mark.parametrize("kind", LOSSES)
def test_each_loss_decreases_over_a_few_train_steps_on_a_fixed_batch(label_ids, rows, tokenizer, kind, step_mode):
    scorer = fresh_scorer(label_ids)
    params = [p for p in scorer.model.parameters() if p.requires_grad]
    cfg = CFG
    trainer = build_trainer(scorer, params, lambda ps: build_optimizer(cfg, ps)[0],
                            lambda opt: build_scheduler(cfg, opt, 100), kind, cfg.max_grad_norm, step_mode)
    batch = batch_of(rows[:16], tokenizer, kind)
    losses = []
    for _ in range(6):
        stats = train_step(trainer, [batch])
        assert not stats["skipped"] and stats["grad_norm"] > 0
        losses.append(stats["loss"])
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.9 * losses[0], losses
    after, _ = scorer.loss(batch, kind)
    assert after.item() < losses[0]


def test_gradient_accumulation_matches_one_big_batch(label_ids, rows, tokenizer):
    """Two micro-batches of 8 give the same step as one batch of 16 (losses weighted by rows)."""
    results = []
    for split in (1, 2):
        scorer = fresh_scorer(label_ids)
        params = [p for p in scorer.model.parameters() if p.requires_grad]
        trainer = build_trainer(scorer, params, lambda ps: torch.optim.SGD(ps, lr=0.1),
                                lambda opt: build_scheduler(CFG, opt, 100), "label", 0.0, "eager")
        size = 16 // split
        micro = [batch_of(rows[i:i + size], tokenizer, "label") for i in range(0, 16, size)]
        stats = train_step(trainer, micro)
        results.append((stats["loss"], stats["grad_norm"], [p.detach().clone() for p in params]))
    (loss1, norm1, w1), (loss2, norm2, w2) = results
    assert abs(loss1 - loss2) < 1e-5 and abs(norm1 - norm2) < 1e-4
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(w1, w2))


# --- the metrics computed from the scores ---------------------------------------------------------------

def test_balanced_accuracy_is_the_mean_recall_over_the_gold_classes():
    from nli_qlora.training.classification import summarize
    gold = [0, 0, 0, 0, 1, 1, 2, 2]
    pred = [0, 0, 0, 1, 1, 2, 2, 0]
    s = summarize(gold, pred)
    assert s["confusion"] == [[3, 1, 0], [0, 1, 1], [1, 0, 1]]  # rows gold, columns predicted
    assert s["per_class_recall"] == {"entailment": 0.75, "neutral": 0.5, "contradiction": 0.5}
    assert s["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert s["accuracy"] == 5 / 8 and s["rows"] == 8
    assert s["per_class_precision"]["entailment"] == 0.75 and s["support"] == {"entailment": 4, "neutral": 2,
                                                                                "contradiction": 2}


def test_a_class_absent_from_gold_does_not_count_in_balanced_accuracy():
    """As sklearn's balanced_accuracy_score: the mean is over classes that occur in gold."""
    from nli_qlora.training.classification import summarize
    s = summarize([0, 0, 1, 1], [0, 2, 1, 1])
    assert s["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    assert s["per_class_recall"]["contradiction"] == 0.0


def test_always_predicting_one_class_scores_chance_balanced_accuracy():
    from nli_qlora.training.classification import summarize
    gold = [0] * 60 + [1] * 30 + [2] * 10
    s = summarize(gold, [0] * 100)
    assert s["accuracy"] == 0.6 and s["balanced_accuracy"] == pytest.approx(1 / 3)
