"""Where an evaluation's time goes in the train and score commands (session 13 probe).
python3 .x/evalprobe.py train ARGS... | score ARGS...: runs the command in this process with predict() timed per batch."""
import json, sys, time, statistics
import nli_qlora.training.evaluate as ev
import torch
from nli_qlora.data.batches import collate, eval_batches
from nli_qlora.model.compile_layers import uncompiled
from nli_qlora.training.step import to_device

LOG = []

@torch.no_grad()
def predict(scorer, rows, batch_size, pad_id, pad_multiple=8, progress=None):
    import numpy as np
    t_all = time.perf_counter()
    was_training = scorer.model.training
    scorer.model.eval()
    device = scorer.label_ids.device
    out = np.zeros((len(rows), len(scorer.label_ids)), dtype=np.float32)
    lengths = [len(r.prompt_ids) for r in rows]
    rec = {"rows": len(rows), "batches": []}
    try:
        with uncompiled():
            for idx in eval_batches(lengths, batch_size):
                t0 = time.perf_counter()
                batch = collate([rows[i] for i in idx], pad_id, pad_multiple, pin=device.type == "cuda")
                t1 = time.perf_counter()
                dev = to_device(batch, device)
                t2 = time.perf_counter()
                logits = scorer.label_logits(dev)
                t3 = time.perf_counter()
                if device.type == "cuda": torch.cuda.synchronize()
                t4 = time.perf_counter()
                out[idx] = logits.float().cpu().numpy()
                t5 = time.perf_counter()
                rec["batches"].append({"n": len(idx), "w": int(batch["input_ids"].shape[1]), "collate_ms": round((t1-t0)*1e3, 2),
                    "h2d_ms": round((t2-t1)*1e3, 2), "launch_ms": round((t3-t2)*1e3, 2), "gpu_wait_ms": round((t4-t3)*1e3, 2),
                    "d2h_ms": round((t5-t4)*1e3, 2)})
                if progress is not None:
                    progress(len(idx))
    finally:
        scorer.model.train(was_training)
    rec["total_ms"] = round((time.perf_counter() - t_all) * 1e3, 2)
    print("PREDICT " + json.dumps(rec), file=sys.stderr, flush=True)
    return out

ev.predict = predict
which = sys.argv[1]
if which == "score":
    import nli_qlora.predict.stream as st
    st.predict = predict
    orig_enc = st.encode_for
    def encode_for(m, examples):
        t0 = time.perf_counter(); r = orig_enc(m, examples)
        print(f"ENCODE {len(examples)} rows {round((time.perf_counter()-t0)*1e3,1)} ms", file=sys.stderr, flush=True); return r
    st.encode_for = encode_for
    orig_ss = st.score_stream
    def score_stream(*a, **k):
        t0 = time.perf_counter(); r = orig_ss(*a, **k)
        print(f"SCORE_STREAM {round((time.perf_counter()-t0)*1e3,1)} ms", file=sys.stderr, flush=True); return r
    import nli_qlora.predict.session as se
    se.score_stream = score_stream
    from nli_qlora.cli.score import main
else:
    from nli_qlora.cli.train import main
sys.exit(main(sys.argv[2:]))
