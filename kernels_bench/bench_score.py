"""Scoring rows: the score CLI's path (nli_qlora.predict.stream.score_examples: tokenize, the label-token
scorer over length-sorted batches, softmax) against the way users often score a causal LM (batched
greedy `model.generate` of a few tokens, decode, see which label word the text starts with).

Same model, same rows, same batch size, one timed run each, after one untimed warm-up batch.
The generate baseline gets its best chance: left padding, the KV cache on, and only as many new
tokens as the longest label word needs.

Wherever the generated text parses as a label word, its label must be the scorer's: greedy decoding
takes the argmax over the whole vocabulary, and a label word's first token winning there means it
wins among the three label tokens too. The two paths pad differently (left with a mask, right
without one), so in low precision a row may flip where the scorer's two labels are within
floating-point noise; those are counted apart (near_ties) and any other disagreement fails.

    NLI_BENCH_SIZE=smoke  the tiny model (tiny preset) with an adapter trained here for a few seconds
                          on the answer token, 64 rows of its test split (the CPU default)
    NLI_BENCH_SIZE=full   SmolLM2-135M-Instruct zero-shot (seed preset), 2,000 evenly spaced SNLI
                          validation rows; skipped, saying why, without the gguf package or the GGUF
    NLI_BENCH_CHECKPOINT  score this checkpoint (or run directory) instead, at either size
    NLI_BENCH_MODEL       or this --model zero-shot (e.g. random:DIR, a real configuration with seeded
                          random weights: timings do not depend on values), with NLI_BENCH_TOKENIZER

Zero-shot, SmolLM2 mostly answers with other words ("No, the premise ...") and the generate path
then has no label at all for most rows: parsed_fraction says how many it had. Only a model tuned
on the answer token (--loss answer or lm) reliably generates label words.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time

import numpy as np
import pytest
import torch

from kernels_bench import sizes
from kernels_bench.conftest import build_or_skip, snli_dir, synchronize

ROWS = 2000 if sizes.FULL else 64
METHODS = ("label-scorer", "generate")
# largest log-probability gap between the scorer's label and the generated one that floating-point
# differences between the two paths' padding can explain, by compute dtype
NEAR_TIE = {torch.float32: 1e-3, torch.bfloat16: 0.25, torch.float16: 0.05}
_RATES: dict[str, float] = {}


def tiny_answer_checkpoint(folder) -> str:
    """A tiny adapter trained briefly on the answer token (full-vocabulary loss), so that greedy
    generation does answer with label words and the agreement check has rows to compare."""
    from nli_qlora.cli.train import main as train

    run = folder / "tiny-answer"
    argv = ["--preset", "tiny", "--loss", "answer", "--epochs", "1", "--train-size", "320", "--validation-size", "10",
            "--test-size", "10", "--no-zero-shot-eval", "--output-dir", str(run), "--quiet"]
    assert train(argv) == 0
    return str(run)


def score_target(tmp_path_factory):
    """What to score: NLI_BENCH_CHECKPOINT when set; else SmolLM2 zero-shot (full) or a tiny adapter (smoke)."""
    from nli_qlora.cli.score import build_parser
    from nli_qlora.predict.targets import main_target

    checkpoint, model = os.environ.get("NLI_BENCH_CHECKPOINT"), os.environ.get("NLI_BENCH_MODEL")
    if checkpoint:
        argv = ["--checkpoint", checkpoint]
    elif sizes.FULL or model:
        model = model or sizes.SMOLLM2
        if model.endswith(".gguf") and importlib.util.find_spec("gguf") is None:
            pytest.skip(f"{model} needs the gguf package (pip install gguf)")
        tokenizer = os.environ.get("NLI_BENCH_TOKENIZER")
        argv = ["--model", model, "--preset", "seed"] + (["--tokenizer", tokenizer] if tokenizer else [])
    else:
        argv = ["--checkpoint", tiny_answer_checkpoint(tmp_path_factory.mktemp("bench_score"))]
    return main_target(build_parser().parse_args(argv + ["--input", "-"]))


def score_rows():
    """ROWS labelled examples: evenly spaced SNLI validation rows (full), or the tiny test split."""
    from nli_qlora.data.read import Example, evenly_spaced, iter_records, parse_record

    if sizes.FULL:
        folder = snli_dir()
        if folder is None:
            pytest.skip("SNLI data missing: set NLI_SNLI_DIR to a folder with validation.jsonl")
        parsed = (parse_record(r, line) for line, r in iter_records(str(folder / "validation.jsonl")))
        examples = [e for e in parsed if isinstance(e, Example) and e.label is not None]
        return [examples[i] for i in evenly_spaced(len(examples), ROWS)]
    from nli_qlora.data.builtin import tiny_split
    return [parse_record(r, i) for i, r in enumerate(tiny_split("test")[:ROWS], 1)]


@torch.no_grad()
def generate_labels(m, examples, batch_size: int, new_tokens: int) -> list[int | None]:
    """The naive way: greedy generation, decode, the label word the text starts with (None: no label word)."""
    from nli_qlora.data.prompt import format_prompt

    tok, model = m.tokenizer, m.scorer.model
    words = sorted(((w.strip().lower(), i) for i, w in enumerate(m.cfg.label_words)), key=lambda x: -len(x[0]))
    dev = m.scorer.label_ids.device
    labels: list[int | None] = []
    tok.padding_side = "left"  # generation continues from the last position: pads must come first
    try:
        for start in range(0, len(examples), batch_size):
            prompts = [format_prompt(m.cfg.prompt_template, e.premise, e.hypothesis)
                       for e in examples[start:start + batch_size]]
            enc = tok(prompts, return_tensors="pt", padding=True).to(dev)
            out = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=tok.pad_token_id)
            for text in tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True):
                text = text.strip().lower()
                labels.append(next((i for w, i in words if text.startswith(w)), None))
    finally:
        tok.padding_side = "right"
    return labels


@pytest.fixture(scope="module")
def setup(model_cache, device, tmp_path_factory):
    """The model as the score CLI loads it, the rows, and the scorer's own predictions (untimed)."""
    from nli_qlora.infra.quiet import quiet_libraries
    from nli_qlora.predict.stream import score_examples
    from nli_qlora.predict.targets import load

    quiet_libraries()
    target = score_target(tmp_path_factory)
    m = model_cache.get(("score", target.name), lambda: build_or_skip(target.name, lambda: load(target, device)))
    examples = score_rows()
    model = m.scorer.model
    model.generation_config.temperature = model.generation_config.top_p = model.generation_config.top_k = None
    new_tokens = max(len(m.tokenizer.encode(w, add_special_tokens=False)) for w in m.cfg.label_words)
    batch = m.cfg.eval_batch_size
    score_examples([m], examples[:batch])  # warm-up, both paths
    generate_labels(m, examples[:batch], batch, new_tokens)
    good, probs, errors = score_examples([m], examples)
    assert not errors, f"rows over --max-length in the benchmark set: {list(errors.values())[:1]}"
    return {"m": m, "target": target, "examples": examples, "probs": probs[0], "new_tokens": new_tokens,
            "batch": batch}


def _info(setup, device_name: str, method: str, seconds: float, peak_gb) -> dict:
    import bitsandbytes
    import peft
    import transformers

    m = setup["m"]
    rows = len(setup["examples"])
    return {"method": method, "size": sizes.SIZE, "rows": rows, "seconds": round(seconds, 4),
            "rows_per_s": round(rows / seconds, 2), "model": m.cfg.model,
            "checkpoint": str(m.target.checkpoint) if m.target.checkpoint else None, "device": device_name,
            "dtype": str(m.scorer.lm_head.weight.dtype)[6:], "quantization": m.cfg.quantization,
            "batch_size": setup["batch"], "peak_gpu_gb": peak_gb,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__},
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


@pytest.mark.parametrize("method", METHODS)
def bench_score_rows(benchmark, setup, method, device, device_name, case_memory):
    from nli_qlora.predict.stream import score_examples

    m, examples = setup["m"], setup["examples"]
    result: dict = {}

    def run():
        t0 = time.perf_counter()
        if method == "label-scorer":
            result["value"] = score_examples([m], examples)[1][0]
        else:
            result["value"] = generate_labels(m, examples, setup["batch"], setup["new_tokens"])
        synchronize(device)
        result["seconds"] = time.perf_counter() - t0

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    info = _info(setup, device_name, method, result["seconds"], case_memory.peak_gb())
    _RATES[method] = info["rows_per_s"]
    ours = setup["probs"].argmax(axis=1)
    if method == "label-scorer":
        assert np.array_equal(result["value"].argmax(axis=1), ours)  # the scorer is deterministic
    else:
        info.update(agreement(result["value"], setup["probs"], m.scorer.lm_head.weight.dtype, setup["new_tokens"]))
        if "label-scorer" in _RATES:
            info["scorer_speedup"] = round(_RATES["label-scorer"] / info["rows_per_s"], 2)
    benchmark.extra_info.update(info)
    if method == "generate":
        assert not info["disagreements"], json.dumps(info["disagreement_rows"][:5])


def agreement(generated: list[int | None], probs: np.ndarray, dtype: torch.dtype, new_tokens: int) -> dict:
    """How often the generated text parsed, how often it agreed with the scorer, and every row where
    it disagreed by more than floating-point noise."""
    ours = probs.argmax(axis=1)
    parsed = [i for i, g in enumerate(generated) if g is not None]
    differ = [i for i in parsed if generated[i] != ours[i]]
    gap = {i: math.log(max(probs[i, ours[i]], 1e-30)) - math.log(max(probs[i, generated[i]], 1e-30)) for i in differ}
    real = [i for i in differ if gap[i] > NEAR_TIE.get(dtype, 1e-3)]
    return {"generate_new_tokens": new_tokens, "parsed": len(parsed),
            "parsed_fraction": round(len(parsed) / len(generated), 4),
            "agreement": round(1 - len(differ) / len(parsed), 4) if parsed else None,
            "near_ties": len(differ) - len(real), "disagreements": len(real),
            "disagreement_rows": [{"row": i, "scorer": int(ours[i]), "generate": generated[i], "gap": round(gap[i], 4)}
                                  for i in real]}
