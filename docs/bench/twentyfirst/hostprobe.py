"""Where the loop's step goes once the 8-bit update is queued before the read-back (twenty-first round).

stepprobe.py's trainer and batches (SmolLM2's or Phi-2's configuration with random weights, batch 8 x 64, the six
options), the step of training.step.train_step with the kernel's update, instrumented: host clock stamps between
its parts, CUDA events around the graph replay, the clipping, the update and the publish. One JSON line of
medians (ms).

    python hostprobe.py --model random:DIR --tokenizer DIR [--steps 60]"""
import argparse, dataclasses, json, math, os, statistics, sys, time

sys.path.insert(0, os.getcwd())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args()
    import torch
    from nli_qlora.config import preset
    from nli_qlora.tools.tune import draw_batches, fixed_rows, prepare, with_warmup
    from nli_qlora.training.optim import trainer_for
    from nli_qlora.training.step import synchronize, timed_step, to_device
    dev = torch.device("cuda", 0)
    cfg = dataclasses.replace(preset("seed"), model=args.model, tokenizer=args.tokenizer, batch_size=8,
                              dequantize_base=True, lora_compute_dtype="bfloat16", fused_lora=True,
                              fused_projections=True, fused_norm="phi" not in args.model, fused_rope=True)
    bundle = prepare(cfg, dev)
    n = args.steps + 4
    rows = fixed_rows(64, 8 * n, bundle.model.config.vocab_size, seed=cfg.seed)
    plan = with_warmup(draw_batches(rows, 8, 1, False, n, bundle.tokenizer.pad_token_id, cfg.pad_to_multiple,
                                    cfg.seed, pin=True), 0)
    t, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=10000)
    assert t.device_update is not None
    for micro in plan[:4]:
        timed_step(t, micro, dev)
    keys = ("wall", "h_to_device", "h_launch_graph", "h_launch_clip", "h_launch_update", "h_launch_publish",
            "h_wait", "h_after", "h_final_sync", "g_graph", "g_clip", "g_update", "g_publish", "g_idle")
    rec = {k: [] for k in keys}
    for micro in plan[4:]:
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(5)]
        synchronize(dev)
        h = [time.perf_counter()]
        batch = to_device(micro[0], dev)
        h.append(time.perf_counter())
        t.zero_grad()
        ev[0].record()
        loss, _ = t.graphed(batch, 1.0)
        ev[1].record()
        h.append(time.perf_counter())
        norm = t.clip()
        ev[2].record()
        h.append(time.perf_counter())
        t.device_update.launch(loss, norm)
        ev[3].record()
        h.append(time.perf_counter())
        t.publish()
        ev[4].record()
        h.append(time.perf_counter())
        lv, nv = torch.stack([loss.float(), norm.float()]).tolist()
        h.append(time.perf_counter())
        if torch.isfinite(torch.tensor(lv)) and torch.isfinite(torch.tensor(nv)):
            t.device_update.advance()
            t.scheduler.step()
        h.append(time.perf_counter())
        synchronize(dev)
        h.append(time.perf_counter())
        g = [ev[i].elapsed_time(ev[i + 1]) for i in range(4)]
        wall = (h[-1] - h[0]) * 1e3
        values = [wall] + [(b - a) * 1e3 for a, b in zip(h, h[1:])] + g + [wall - sum(g)]
        for k, v in zip(keys, values):
            rec[k].append(v)
    out = {k: round(statistics.median(v), 3) for k, v in rec.items()}
    synchronize(dev)
    t0 = time.perf_counter()
    for micro in plan[4:]:
        timed_step(t, micro, dev)
    out["timed_step_ms_per_step"] = round((time.perf_counter() - t0) * 1e3 / len(plan[4:]), 3)
    out.update(model=args.model, device=torch.cuda.get_device_name(dev))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
