"""Where the model load's time goes (nineteenth round): the imports split at torch, then each piece of
model.bundle.load_bundle and with_lora timed on its own (CUDA synchronized after each), as the train
command loads SmolLM2's configuration with random weights and the six speed options.

    python loadprobe.py --model random:DIR --tokenizer DIR      (run from the tree to measure)

Prints one JSON line: {piece: seconds}. A piece that a tree lacks is left out."""
import time

T0 = time.perf_counter()
import argparse, dataclasses, functools, json, os, sys  # noqa: E401,E402

sys.path.insert(0, os.getcwd())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", required=True)
    args = p.parse_args()
    laps = {}
    t = time.perf_counter()
    import torch
    laps["import torch"] = time.perf_counter() - t
    t = time.perf_counter()
    import nli_qlora.cli.train  # noqa: F401
    from nli_qlora.training import recipe  # noqa: F401
    import bitsandbytes, peft, transformers  # noqa: F401,E401
    laps["import the rest"] = time.perf_counter() - t
    from nli_qlora.config import preset
    from nli_qlora.model import bundle as B, load as L
    dev = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t = time.perf_counter()
    torch.zeros(1, device=dev)
    laps["device"] = time.perf_counter() - t

    def timed(mod, name):
        f = getattr(mod, name, None)
        if f is None:
            return

        @functools.wraps(f)
        def g(*a, **k):
            sync()
            t = time.perf_counter()
            r = f(*a, **k)
            sync()
            laps[name] = laps.get(name, 0.0) + time.perf_counter() - t
            return r
        setattr(mod, name, g)

    for name in ("load_tokenizer", "load_base_model", "attach_lora", "parameter_counts", "dequantize_base_",
                 "fuse_lora_", "fuse_projections_", "fuse_norms_", "fuse_rope_", "warm_up_meanwhile", "check_context"):
        timed(B, name)
    for name in ("load_config", "seeded_init_", "quantize_linears_", "use_causal_sdpa_", "keep_trainable_layout"):
        timed(L, name)
    try:
        from nli_qlora.model import fused_projections as FP, fused_swiglu as FS
        for name in ("groups_of", "fuse_swiglu_", "_computes_swiglu"):
            timed(FS, name)
            timed(FP, name)
    except ImportError:
        pass
    cfg = dataclasses.replace(preset("seed"), model=args.model, tokenizer=args.tokenizer, dequantize_base=True,
                              lora_compute_dtype="bfloat16" if dev.type == "cuda" else "float32", fused_lora=True, fused_projections=True,
                              fused_norm=True, fused_rope=True)
    t = time.perf_counter()
    b = B.with_lora(B.load_bundle(cfg, dev))
    sync()
    laps["load_bundle+with_lora"] = time.perf_counter() - t
    t = time.perf_counter()
    x = torch.randn(64, 64, device=dev, dtype=torch.bfloat16)
    (x @ x).sum().item()
    laps["a matmul after"] = time.perf_counter() - t
    laps["process"] = time.perf_counter() - T0
    print(json.dumps({k: round(v, 3) for k, v in laps.items()}))


main()
