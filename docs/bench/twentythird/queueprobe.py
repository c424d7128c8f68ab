"""The loop's steps one after the other (timed_step: a synchronized start each) against steps whose forward and
backward are queued before the previous step's read-back (loop_step with `then`), with bitsandbytes' prefetch of
the paged optimizer states on each update or not (twenty-third round).

stepprobe.py's trainer and batches (SmolLM2's or Phi-2's configuration with random weights, batch 8 x 64, the six
options). Variants alternate, each over the same --steps batches; ms per step is the wall time of all of them
over their number, the device synchronized at the end. One JSON line of medians over --rounds.

    python queueprobe.py --model random:DIR --tokenizer DIR [--steps 100] [--rounds 3]"""
import argparse, dataclasses, json, os, statistics, sys, time

sys.path.insert(0, os.getcwd())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--host-work-ms", type=float, default=0.0,
                   help="a busy wait after each step, as the loop's own work")
    args = p.parse_args()
    import torch
    import bitsandbytes.functional as F
    from nli_qlora.config import preset
    from nli_qlora.tools.tune import draw_batches, fixed_rows, prepare, with_warmup
    from nli_qlora.training.optim import trainer_for
    from nli_qlora.training import step as S
    dev = torch.device("cuda", 0)
    cfg = dataclasses.replace(preset("seed"), model=args.model, tokenizer=args.tokenizer, batch_size=8,
                              dequantize_base=True, lora_compute_dtype="bfloat16", fused_lora=True,
                              fused_projections=True, fused_norm="phi" not in args.model, fused_rope=True)
    bundle = prepare(cfg, dev)
    n = args.steps + 4
    rows = fixed_rows(64, 8 * n, bundle.model.config.vocab_size, seed=cfg.seed)
    plan = with_warmup(draw_batches(rows, 8, 1, False, n, bundle.tokenizer.pad_token_id, cfg.pad_to_multiple,
                                    cfg.seed, pin=True), 0)
    t, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=100000)
    assert t.device_update is not None
    for micro in plan[:4]:
        S.timed_step(t, micro, dev)
    prefetch = F.prefetch_tensor
    work = args.host_work_ms / 1e3

    def busy():
        if work:
            end = time.perf_counter() + work
            while time.perf_counter() < end:
                pass

    def run(variant: str) -> float:
        F.prefetch_tensor = prefetch if "prefetch" in variant else (lambda *a, **k: None)
        measured = plan[4:]
        S.synchronize(dev)
        t0 = time.perf_counter()
        for i, micro in enumerate(measured):
            if variant.startswith("timed"):
                S.timed_step(t, micro, dev)
            else:
                then = (lambda i=i: (measured[i + 1], None)) if i + 1 < len(measured) else None
                S.loop_step(t, None if t.queued else micro, dev, then=then)
            busy()
        S.synchronize(dev)
        return (time.perf_counter() - t0) * 1e3 / len(measured)

    variants = ("timed+prefetch", "queued+prefetch", "timed-noprefetch", "queued-noprefetch")
    got = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            got[v].append(run(v))
    F.prefetch_tensor = prefetch
    out = {v: round(statistics.median(x), 3) for v, x in got.items()}
    out.update(all={v: [round(y, 3) for y in x] for v, x in got.items()}, host_work_ms=args.host_work_ms,
               model=args.model, device=torch.cuda.get_device_name(dev))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
