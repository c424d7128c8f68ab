"""Scoring rows/s on a CPU with bitsandbytes' AVX512-BF16 inference layout against the trainable
layout, side by side in one process (docs/benchmarks.md, "CPU: bitsandbytes' inference layout").

    python scripts/bench_cpu_layout.py --rows 400 [--model SmolLM2-135M-Instruct.Q4_1.gguf]
        [--validation ../shared/data/snli/validation.jsonl]

The score command's own path (predict.targets.load, predict.stream.score_examples) with the seed
preset's prompt, compute dtype bfloat16 (the only dtype for which the scorer takes the inference
layout); the trainable layout is what model.load.keep_trainable_layout leaves. Prints rows/s for
each and how many rows get the same label. Meaningful only on a CPU with AVX512-BF16."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the package lives beside scripts/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nli_qlora  # noqa: E402,F401  first: it quiets bitsandbytes' import-time notice
import bitsandbytes.functional as bnb_functional  # noqa: E402
import numpy as np  # noqa: E402

from nli_qlora.cli.score import build_parser  # noqa: E402
from nli_qlora.data.read import Example, evenly_spaced, iter_records, parse_record  # noqa: E402
from nli_qlora.infra.quiet import quiet_libraries  # noqa: E402
from nli_qlora.model.load import keep_trainable_layout  # noqa: E402
from nli_qlora.predict.stream import score_examples  # noqa: E402
from nli_qlora.predict.targets import load, main_target  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--model", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--validation", default=str(REPO.parent / "shared/data/snli/validation.jsonl"))
    args = p.parse_args()
    quiet_libraries()
    parsed = [parse_record(r, line) for line, r in iter_records(args.validation)]
    examples = [e for e in parsed if isinstance(e, Example)]
    examples = [examples[i] for i in evenly_spaced(len(examples), args.rows)]
    print(f"AVX512-BF16: {bool(bnb_functional.has_avx512bf16())}; {len(examples)} rows of {args.validation}")
    cases = [("inference", "bfloat16"), ("trainable", "bfloat16"), ("trainable", "float32")]
    probs, rates = {}, {}
    for layout, dtype in cases + cases[::-1]:  # each twice, in both orders
        target = main_target(build_parser().parse_args(["--model", args.model, "--preset", "seed",
                                                         "--compute-dtype", dtype, "--input", "-"]))
        m = load(target)
        if layout == "trainable":
            keep_trainable_layout(m.scorer.model)
        score_examples([m], examples[:32])  # warm-up
        t0 = time.perf_counter()
        probs[layout, dtype] = score_examples([m], examples)[1][0]
        rates.setdefault((layout, dtype), []).append(len(examples) / (time.perf_counter() - t0))
    for (layout, dtype), r in rates.items():
        print(f"{layout} layout, {dtype}: {' / '.join(f'{x:.1f}' for x in r)} rows/s")
    a, b = probs["inference", "bfloat16"], probs["trainable", "float32"]
    print(f"inference bf16 against trainable float32: same label {100 * np.mean(a.argmax(1) == b.argmax(1)):.1f}% "
          f"of rows; largest probability difference {np.abs(a - b).max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
