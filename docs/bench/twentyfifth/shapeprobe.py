"""What an evaluation batch of a new shape costs the first time (the twenty-second round: about 0.1 s a shape in
the score command). Each batch of the score command's predict() runs its forward twice, synchronized, and each
pass is timed; the first pass of the second batch (a new width) runs under cProfile, whose top functions by own
time go to stderr.

    python3 shapeprobe.py ARGS...      (the score command's arguments)

One SHAPE line a batch on stderr: rows, width, first pass ms, second pass ms."""
import cProfile, io, json, os, pstats, sys, time
import numpy as np
import torch
from nli_qlora.data.batches import collate, eval_batches
from nli_qlora.model.compile_layers import uncompiled
from nli_qlora.training.step import to_device


@torch.no_grad()
def predict(scorer, rows, batch_size, pad_id, pad_multiple=8, progress=None):
    was_training = scorer.model.training
    scorer.model.eval()
    device = scorer.label_ids.device
    out = np.zeros((len(rows), len(scorer.label_ids)), dtype=np.float32)
    lengths = [len(r.prompt_ids) for r in rows]
    try:
        with uncompiled():
            for n, idx in enumerate(eval_batches(lengths, batch_size)):
                batch = collate([rows[i] for i in idx], pad_id, pad_multiple, pin=device.type == "cuda")
                dev = to_device(batch, device)
                times = []
                for attempt in range(2):
                    prof = cProfile.Profile() if (n == 1 and attempt == 0) else None
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    if prof:
                        prof.enable()
                    logits = scorer.label_logits(dev)
                    torch.cuda.synchronize()
                    if prof:
                        prof.disable()
                    times.append(round((time.perf_counter() - t0) * 1e3, 1))
                    if prof:
                        s = io.StringIO()
                        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
                        print(s.getvalue(), file=sys.stderr)
                out[idx] = logits.float().cpu().numpy()
                print("SHAPE " + json.dumps([len(idx), int(batch["input_ids"].shape[1])] + times), file=sys.stderr,
                      flush=True)
                if progress is not None:
                    progress(len(idx))
    finally:
        scorer.model.train(was_training)
    return out


import nli_qlora.predict.stream as st
st.predict = predict
from nli_qlora.cli.score import main
code = main(sys.argv[1:])
sys.stderr.flush()
os._exit(code or 0)
