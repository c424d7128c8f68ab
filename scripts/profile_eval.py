"""Evaluation throughput by batch size: the loop's own evaluation (training.evaluate.predict, the
label-token scorer over length-sorted batches) on real SNLI validation rows, rows/s per
--eval-batch-size, with the 4-bit base and with it kept dequantized (--dequantize-base), adapters
in float32 or bfloat16 (--lora-compute-dtype).

    python scripts/profile_eval.py --model SmolLM2-135M-Instruct.Q4_1.gguf --rows 2000 --file validation.jsonl
    python scripts/profile_eval.py --model random:phi-2 --tokenizer DIR --rows 2000 --file validation.jsonl

Prints one JSON line per (base, batch size): seconds of a warm pass (after one untimed pass at that
batch size), rows/s, batches. Issue 14 asks for 3,000 rows/s on SmolLM2 once loaded."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer")
    p.add_argument("--file", required=True, help="rows to evaluate (SNLI JSONL)")
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--bases", nargs="+", default=["4-bit", "dequantized"], choices=("4-bit", "dequantized"))
    p.add_argument("--lora-compute-dtype", default="float32", choices=("float32", "bfloat16"),
                   help="the adapters' dtype, as the score command makes it from a run's saved masters")
    args = p.parse_args()

    import torch

    from nli_qlora.config import preset
    from nli_qlora.model.dequantize import dequantize_base_
    from nli_qlora.predict.targets import adapter_copies_
    from nli_qlora.tools.tune import encoded_rows, prepare
    from nli_qlora.training.scoring import LabelScorer
    from nli_qlora.training.evaluate import predict
    from nli_qlora.training.step import synchronize

    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    cfg = dataclasses.replace(preset("seed"), model=args.model, tokenizer=args.tokenizer)
    rig = prepare(cfg, device)
    adapter_copies_(rig.model, args.lora_compute_dtype)
    rows = encoded_rows(cfg, rig.tokenizer, "validation", args.file, args.rows)
    scorer = LabelScorer(rig.model, rig.label_ids)
    pad = rig.tokenizer.pad_token_id
    reference = None
    for base in args.bases:
        if base == "dequantized":
            dequantize_base_(rig.model)
        for bs in args.batch_sizes:
            predict(scorer, rows, bs, pad, cfg.pad_to_multiple)  # untimed: lazy init, cuBLAS heuristics
            synchronize(device)
            t0 = time.perf_counter()
            logits = predict(scorer, rows, bs, pad, cfg.pad_to_multiple)
            seconds = time.perf_counter() - t0
            if reference is None:
                reference = logits
            agree = float((logits.argmax(1) == reference.argmax(1)).mean())
            print(json.dumps({"model": args.model, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                              else "cpu", "base": base, "lora_compute_dtype": args.lora_compute_dtype, "batch": bs, "rows": len(rows), "seconds": round(seconds, 4),
                              "rows_per_s": round(len(rows) / seconds, 1), "batches": -(-len(rows) // bs),
                              "same_labels_as_first": round(agree, 4),
                              "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if device.type == "cuda"
                              else None}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
