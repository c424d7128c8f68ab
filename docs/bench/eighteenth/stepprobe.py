"""Where a captured step's wall time goes between the GPU's kernels (seventeenth round; reused in the eighteenth).

One trainer as the loop builds it (tools.tune.prepare, training.optim.trainer_for), SmolLM2's or Phi-2's
configuration with random weights, batch 8 x 64 random tokens, the six speed options. Each step is
train_step's sequence, instrumented: host clock stamps between its parts and CUDA events around the
graph replay, the clipping, the optimizer and the working-copy publish. Prints one JSON line of medians
over the measured steps (ms): where the host waited, where the GPU was idle.

    python stepprobe.py --model random:DIR --tokenizer DIR [--steps 60]"""
import argparse, dataclasses, json, os, statistics, sys, time

sys.path.insert(0, os.getcwd())  # the tree to measure: run it from the repository root (or a baseline's)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--optimizer", default="paged_adamw_8bit")
    args = p.parse_args()
    import torch
    from nli_qlora.config import preset
    from nli_qlora.tools.tune import draw_batches, fixed_rows, prepare, with_warmup
    from nli_qlora.training.optim import trainer_for
    from nli_qlora.training.step import synchronize, timed_step, to_device
    dev = torch.device("cuda", 0)
    cfg = dataclasses.replace(preset("seed"), model=args.model, tokenizer=args.tokenizer, batch_size=args.batch,
                              dequantize_base=True, lora_compute_dtype="bfloat16", fused_lora=True,
                              fused_projections=True, fused_norm="phi" not in args.model, fused_rope=True,
                              optimizer=args.optimizer)
    bundle = prepare(cfg, dev)
    n = args.steps + 4
    rows = fixed_rows(args.seq, args.batch * n, bundle.model.config.vocab_size, seed=cfg.seed)
    plan = with_warmup(draw_batches(rows, args.batch, 1, False, n, bundle.tokenizer.pad_token_id,
                                    cfg.pad_to_multiple, cfg.seed, pin=True), 0)
    t, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=10000)
    for micro in plan[:4]:
        timed_step(t, micro, dev)
    opt = t.optimizer
    group, param = opt.param_groups[0], opt.param_groups[0]["params"][0]

    def plain_update():  # bitsandbytes' step without its two device syncs (one flat parameter)
        opt.prefetch_state(param)
        opt.update_step(group, param, 0, 0)

    out = {}
    for variant in ("as-is", "no-bnb-sync", "as-is", "no-bnb-sync"):
        rec = {k: [] for k in ("wall", "h_launch", "h_wait_graph", "h_optimizer", "h_publish_sched", "h_final_sync",
                               "g_graph", "g_clip", "g_opt", "g_publish", "g_idle")}
        for micro in plan[4:]:
            ev = [torch.cuda.Event(enable_timing=True) for _ in range(8)]
            synchronize(dev)
            h0 = time.perf_counter()
            batch = to_device(micro[0], dev)
            t.zero_grad()
            ev[0].record()
            loss, _ = t.graphed(batch, 1.0)
            ev[1].record()
            h1 = time.perf_counter()
            norm = t.clip()
            ev[2].record()
            lv, nv = torch.stack([loss.float(), norm.float()]).tolist()
            h2 = time.perf_counter()
            ok = torch.isfinite(torch.tensor(lv)) and torch.isfinite(torch.tensor(nv))
            ev[3].record()
            opt.step() if variant == "as-is" else plain_update()
            ev[4].record()
            h3 = time.perf_counter()
            t.publish()
            ev[5].record()
            t.scheduler.step()
            h4 = time.perf_counter()
            synchronize(dev)
            h5 = time.perf_counter()
            g = [ev[0].elapsed_time(ev[1]), ev[1].elapsed_time(ev[2]), ev[3].elapsed_time(ev[4]), ev[4].elapsed_time(ev[5])]
            wall = (h5 - h0) * 1e3
            for k, v in zip(("wall", "h_launch", "h_wait_graph", "h_optimizer", "h_publish_sched", "h_final_sync"),
                            (wall, (h1 - h0) * 1e3, (h2 - h1) * 1e3, (h3 - h2) * 1e3, (h4 - h3) * 1e3, (h5 - h4) * 1e3)):
                rec[k].append(v)
            for k, v in zip(("g_graph", "g_clip", "g_opt", "g_publish"), g):
                rec[k].append(v)
            rec["g_idle"].append(wall - sum(g))
        med = {k: round(statistics.median(v), 3) for k, v in rec.items()}
        out.setdefault(variant, []).append(med)
    # back to back, as a run's steps follow each other: no sync before each step, one at the end
    for name in ("timed_step", "back-to-back"):
        synchronize(dev)
        t0 = time.perf_counter()
        for micro in plan[4:]:
            if name == "timed_step":
                timed_step(t, micro, dev)
            else:
                from nli_qlora.training.step import train_step
                train_step(t, [to_device(micro[0], dev)])
        synchronize(dev)
        out[name + "_ms_per_step"] = round((time.perf_counter() - t0) * 1e3 / len(plan[4:]), 3)
    out.update(model=args.model, batch=args.batch, seq=args.seq, device=torch.cuda.get_device_name(dev),
               optimizer=args.optimizer)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
