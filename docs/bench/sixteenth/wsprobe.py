"""Issue 14, sixteenth round: what a trainer leaves allocated on the GPU after it is dropped. The
benchmark suite and the tuner build one trainer after another on one model; the suite's peak for the
same SmolLM2 cases read 0.346 GB more after Phi-2's cases (fifteenth round).

    python wsprobe.py TOKENIZER_DIR [shared]      # shared: one warm-up stream for every trainer"""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import torch  # noqa: E402


def main(tok: str) -> None:
    from nli_qlora.config import preset
    from nli_qlora.tools.tune import draw_batches, fixed_rows, prepare, release
    from nli_qlora.training.optim import trainer_for
    from nli_qlora.training.step import timed_step
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    cfg = dataclasses.replace(preset("seed"), model=f"random:{tok}", tokenizer=tok, batch_size=8, dequantize_base=True,
                              lora_compute_dtype="bfloat16", fused_lora=True, fused_projections=True, fused_norm=True)
    bundle = prepare(cfg, device)
    pad, vocab = bundle.tokenizer.pad_token_id, bundle.model.config.vocab_size
    mb = lambda: round(torch.cuda.memory_allocated(device) / 2**20, 1)
    print(json.dumps({"what": "model loaded", "allocated_mib": mb()}))
    for i in range(4):
        before = mb()
        trainer, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=1000)
        for m in draw_batches(fixed_rows(64, 8 * 3, vocab, seed=i), 8, 1, False, 3, pad, 8, pin=torch.cuda.is_available()):
            timed_step(trainer, m, device)
        during = mb()
        trainer = None
        release(bundle)
        print(json.dumps({"what": f"trainer {i}", "before_mib": before, "with_trainer_mib": during, "after_mib": mb(),
                          "streams_note": "a new warm-up stream per trainer"}))
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None:
        clear()
        gc.collect()
        torch.cuda.empty_cache()
        print(json.dumps({"what": "after clearing cuBLAS workspaces", "allocated_mib": mb()}))


if __name__ == "__main__":
    main(sys.argv[1])
