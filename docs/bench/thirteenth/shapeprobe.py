"""Per batch width: capture cost, replay median, and the same step uncaptured (fast step, graph off). Session 13 probe."""
import dataclasses, json, statistics, sys, time
import nli_qlora, bitsandbytes, peft, transformers  # noqa
import torch
from nli_qlora.config import preset
from nli_qlora.tools.tune import draw_batches, fixed_rows, prepare
from nli_qlora.training.optim import trainer_for
from nli_qlora.training.step import timed_step
model, tok = sys.argv[1], sys.argv[2]
device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
cfg = dataclasses.replace(preset("smollm2"), model=model, tokenizer=tok, batch_size=8, dequantize_base=True,
                          lora_compute_dtype="bfloat16" if torch.cuda.is_available() else "float32", fused_lora=True, fused_projections=True)
bundle = prepare(cfg, device)
trainer, _ = trainer_for(cfg, bundle.model, bundle.label_ids, total_steps=10000)
g = trainer.graphed
def batches(seq, n):
    rows = fixed_rows(seq, 8 * n, bundle.model.config.vocab_size, seed=seq)
    return draw_batches(rows, 8, 1, False, n, bundle.tokenizer.pad_token_id, cfg.pad_to_multiple, cfg.seed, pin=device.type == "cuda")
out = []
for seq in ([48, 64, 80, 96, 112, 128] if device.type == "cuda" else [16]):
    plan = batches(seq, 12)
    _, cap = timed_step(trainer, plan[0], device)
    rep = [timed_step(trainer, m, device)[1] for m in plan[1:6]]
    trainer.graphed = None
    eag = [timed_step(trainer, m, device)[1] for m in plan[6:12]]
    trainer.graphed = g
    r = {"seq": seq, "capture_step_ms": round(cap * 1e3, 1), "replay_ms": round(statistics.median(rep) * 1e3, 2),
         "eager_first_ms": round(eag[0] * 1e3, 1), "eager_median_ms": round(statistics.median(eag[1:]) * 1e3, 2),
         "peak_gb": round((torch.cuda.max_memory_allocated() if device.type == "cuda" else 0) / 1e9, 3)}
    print("SHAPE " + json.dumps(r), flush=True)
