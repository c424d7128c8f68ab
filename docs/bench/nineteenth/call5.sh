#!/usr/bin/env bash
# nineteenth round, call 5, at the commit that keeps the one-kernel LoRA input gradient (call 4's undo of the update
# reverted): the smoke's checks of the changed path (the resume bit for bit with the six options; the grouped update against
# the per-layer one, dropout off: the kernel without masks; the fused-rope run whose last batch shape is first met inside a
# capture, where the groups fall back to torch's kernels), then the whole SmolLM2 command against .base (ef6d25b), alternating
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
SMOKE_W=/tmp/smokew5 SMOKE_ONLY='^(resume = uninterrupted \(fused|fused projections = fused lora \(smollm2|fused rope = transformers rope$)' timeout 260 bash scripts/gpu_smoke.sh 2>&1 | tail -5
grep "largest relative\|bit for bit\|differ" $OUT/smoke.log; mv $OUT/smoke.log $OUT/smoke-call5.log
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1
for k in 1 2; do
  (cd .base && /usr/bin/time -f "base-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/base-$k)
  /usr/bin/time -f "new-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/new-$k
done > $OUT/whole-ab.log 2>&1
tar -czf $OUT/whole-ab.tgz -C /tmp/runs base-1/metrics.jsonl new-1/metrics.jsonl base-2/metrics.jsonl new-2/metrics.jsonl
python3 - <<'PY' | tee -a $OUT/whole-ab.log
import json, os, statistics, tarfile
t = tarfile.open(os.environ["OUT"] + "/whole-ab.tgz")
for r in ["base-1", "new-1", "base-2", "new-2"]:
    rs = [json.loads(l) for l in t.extractfile(f"{r}/metrics.jsonl")]
    s, e = rs[0], rs[-1]
    st = [x for x in rs if x["event"] == "step"]
    ev = [x for x in rs if x["event"] == "eval"]
    print(r, "imports", s["startup"].get("imports_s"), "model_s", s["startup"]["model_s"], "run_start", round(s["time"] - s["process_start"], 2),
          "first_step", round(st[0]["time"] - s["process_start"], 2), "median_step_ms", round(statistics.median(x["step_time_s"] for x in st if not x["captured"]) * 1e3, 2),
          "run", round(e["time"] - s["time"], 2), "run_end", e.get("process_wall_s"), "peak_gb", e.get("gpu_mem_peak_gb"),
          "final_loss", st[-1]["loss"], "test_bacc", [x for x in ev if x["split"] == "test"][-1]["balanced_accuracy"])
PY
grep shell $OUT/whole-ab.log
