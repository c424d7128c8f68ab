"""Where an evaluation's time goes, batch by batch, in the train or the score command (the thirteenth
round's probe, with the evaluation's width multiple overridable: EVAL_PAD=N pads every evaluation batch
to a multiple of N instead of the run's --pad-to-multiple).

    python3 evalprobe.py train ARGS... | score ARGS...

Each predict() call prints one PREDICT line on stderr: per batch its rows, width, and the host's
milliseconds to collate, copy, launch the forward, wait for the GPU and copy the logits back."""
import json, os, sys, time
import numpy as np
import torch
import nli_qlora.training.evaluate as ev
from nli_qlora.data.batches import collate, eval_batches
from nli_qlora.model.compile_layers import uncompiled
from nli_qlora.training.step import to_device

PAD = int(os.environ.get("EVAL_PAD", "0"))


@torch.no_grad()
def predict(scorer, rows, batch_size, pad_id, pad_multiple=8, progress=None):
    pad_multiple = PAD or pad_multiple
    t_all = time.perf_counter()
    was_training = scorer.model.training
    scorer.model.eval()
    device = scorer.label_ids.device
    out = np.zeros((len(rows), len(scorer.label_ids)), dtype=np.float32)
    lengths = [len(r.prompt_ids) for r in rows]
    rec = {"rows": len(rows), "batch_size": batch_size, "pad": pad_multiple, "batches": []}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
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
                sync()
                t4 = time.perf_counter()
                out[idx] = logits.float().cpu().numpy()
                t5 = time.perf_counter()
                rec["batches"].append([len(idx), int(batch["input_ids"].shape[1]), round((t1 - t0) * 1e3, 1),
                                       round((t2 - t1) * 1e3, 1), round((t3 - t2) * 1e3, 1), round((t4 - t3) * 1e3, 1),
                                       round((t5 - t4) * 1e3, 1)])
                if progress is not None:
                    progress(len(idx))
    finally:
        scorer.model.train(was_training)
    rec["total_ms"] = round((time.perf_counter() - t_all) * 1e3, 1)
    print("PREDICT " + json.dumps(rec), file=sys.stderr, flush=True)
    return out


ev.predict = predict
if sys.argv[1] == "score":
    import nli_qlora.predict.stream as st
    st.predict = predict
    from nli_qlora.cli.score import main
else:
    from nli_qlora.cli.train import main
code = main(sys.argv[2:])
sys.stderr.flush()
os._exit(code or 0)
