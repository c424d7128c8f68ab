"""Issue 14, sixteenth round: what each SDPA backend costs at a sequence length met for the first time
and in steady state, alone (micro) and inside the real model (model: evaluation batches and the
captured training step). One backend per process, so that no cache carries over.

    python sdpaprobe.py micro  BACKEND     # BACKEND: default cudnn flash efficient
    python sdpaprobe.py model  BACKEND TOKENIZER_DIR"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


def forced(backend: str):
    return sdpa_kernel([BACKENDS[backend]]) if backend != "default" else contextlib.nullcontext()


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return 1e3 * (time.perf_counter() - t)


def micro(backend: str) -> None:
    for name, heads, kv, d in (("smollm2", 9, 3, 64), ("phi-2", 32, 32, 80)):
        for batch in (8, 256):
            for T in range(40, 161, 8):
                q = torch.randn(batch, heads, T, d, device="cuda", dtype=torch.bfloat16, requires_grad=batch == 8)
                k = torch.randn(batch, kv, T, d, device="cuda", dtype=torch.bfloat16, requires_grad=batch == 8)
                v = torch.randn(batch, kv, T, d, device="cuda", dtype=torch.bfloat16, requires_grad=batch == 8)

                def once():
                    with forced(backend):
                        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=kv != heads)
                    if batch == 8:
                        o.backward(torch.ones_like(o))
                try:
                    first = timed(once)
                    steady = statistics.median(timed(once) for _ in range(20))
                except RuntimeError as err:
                    print(json.dumps({"what": "micro", "backend": backend, "model": name, "batch": batch, "T": T,
                                      "error": str(err).splitlines()[0][:120]}))
                    break
                print(json.dumps({"what": "micro", "backend": backend, "model": name, "batch": batch, "T": T,
                                  "pass": "fwd+bwd" if batch == 8 else "fwd", "first_ms": round(first, 3),
                                  "steady_ms": round(steady, 4)}))


def model(backend: str, tok: str) -> None:
    from nli_qlora.config import preset
    from nli_qlora.data.batches import collate
    from nli_qlora.tools.tune import draw_batches, fixed_rows, prepare
    from nli_qlora.training.optim import trainer_for
    from nli_qlora.training.step import timed_step, to_device
    ctx = forced(backend)
    ctx.__enter__()
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    cfg = dataclasses.replace(preset("seed"), model=f"random:{tok}", tokenizer=tok, batch_size=8, dequantize_base=True,
                              lora_compute_dtype="bfloat16", fused_lora=True, fused_projections=True, fused_norm=True,
                              fused_rope=True)
    t = time.perf_counter()
    bundle = prepare(cfg, device)
    print(json.dumps({"what": "load", "backend": backend, "s": round(time.perf_counter() - t, 3)}))
    pad = bundle.tokenizer.pad_token_id
    vocab = bundle.model.config.vocab_size
    trainer, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=1000)
    scorer = trainer.scorer
    # the loop's order: a zero-shot evaluation first, then training steps, evaluations between
    for phase in ("eval", "train", "eval-again"):
        if phase.startswith("eval"):
            scorer.model.eval()
            with torch.no_grad():
                for T in (range(40, 161, 8) if phase == "eval" else range(44, 165, 8)):
                    batch = to_device(collate(fixed_rows(T, 256, vocab, seed=T), pad, 8), device)
                    first = timed(lambda: scorer.label_logits(batch))
                    again = statistics.median(timed(lambda: scorer.label_logits(batch)) for _ in range(3))
                    print(json.dumps({"what": phase, "backend": backend, "T": batch["input_ids"].shape[1],
                                      "first_ms": round(first, 2), "again_ms": round(again, 2)}))
            scorer.model.train()
        else:
            for T in (48, 64, 80, 96, 112, 128):
                plan = draw_batches(fixed_rows(T, 8 * 30, vocab, seed=T), 8, 1, False, 30, pad, 8, pin=torch.cuda.is_available())
                capture = timed(lambda: timed_step(trainer, plan[0], device))
                steps = [1e3 * timed_step(trainer, m, device)[1] for m in plan[1:]]
                print(json.dumps({"what": "train", "backend": backend, "T": T, "capture_ms": round(capture, 1),
                                  "median_step_ms": round(statistics.median(steps), 3)}))
    ctx.__exit__(None, None, None)


if __name__ == "__main__":
    {"micro": lambda: micro(sys.argv[2]), "model": lambda: model(sys.argv[2], sys.argv[3])}[sys.argv[1]]()
