#!/usr/bin/env bash
# sixteenth round, call 2: the whole SmolLM2 command and the score command, the previous revision (.base, 408aec6:
# cuDNN's attention on Hopper, a new warm-up stream per trainer) and this one alternating; Phi-2's captured step
# with each attention kernel (profile_step); then smoke part three (the compiled checks)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
head -n 2000 $D/test.jsonl > /tmp/test2000.jsonl
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1
for k in 1 2; do
  (cd .base && /usr/bin/time -f "base-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/base-$k)
  /usr/bin/time -f "new-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/new-$k
done > $OUT/whole-ab.log 2>&1
for k in 1 2; do
  (cd .base && /usr/bin/time -f "score base-$k %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/base-1 --input /tmp/test2000.jsonl --output /tmp/p-base-$k.jsonl --quiet)
  /usr/bin/time -f "score new-$k %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/base-1 --input /tmp/test2000.jsonl --output /tmp/p-new-$k.jsonl --quiet
done >> $OUT/whole-ab.log 2>&1
python3 - >> $OUT/whole-ab.log <<'PY'
import json
a = [json.loads(l) for l in open("/tmp/p-base-1.jsonl")]; b = [json.loads(l) for l in open("/tmp/p-new-1.jsonl")]
key = "predicted"
same = sum(x[key] == y[key] for x, y in zip(a, b))
print(f"score: {same} of {len(a)} predictions the same ({key})")
PY
tar -czf $OUT/whole-ab.tgz -C /tmp/runs base-1/metrics.jsonl new-1/metrics.jsonl base-2/metrics.jsonl new-2/metrics.jsonl
python3 - <<'PY'
import json, os, statistics, tarfile
t = tarfile.open(os.environ["OUT"] + "/whole-ab.tgz")
for r in ["base-1", "new-1", "base-2", "new-2"]:
    rs = [json.loads(l) for l in t.extractfile(f"{r}/metrics.jsonl")]
    s, e = rs[0], rs[-1]
    st = [x for x in rs if x["event"] == "step"]
    ev = [x for x in rs if x["event"] == "eval"]
    print(r, "model_s", s["startup"]["model_s"], "run_start", round(s["time"] - s["process_start"], 2),
          "first_eval_s", round(ev[0]["eval_time_s"], 3), "evals_s", round(sum(x["eval_time_s"] for x in ev), 2),
          "median_step_ms", round(statistics.median(x["step_time_s"] for x in st if not x["captured"]) * 1e3, 2),
          "captures_s", round(sum(x["step_time_s"] for x in st if x["captured"]), 2), "run_end", e.get("process_wall_s"),
          "final_loss", st[-1]["loss"], "test_bacc", [x for x in ev if x["split"] == "test"][-1]["balanced_accuracy"])
PY
grep shell $OUT/whole-ab.log; grep -v shell $OUT/whole-ab.log | tail -3
P="--batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-rope"
for k in auto flash flash auto; do
  timeout 100 python3 scripts/profile_step.py --model random:phi-2 --tokenizer $TOK $P --attention-kernel $k 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print('phi-2 b8x64', '$k', d['median_step_ms'], 'ms', d['gpu_kernels_per_step'], 'kernels', d['gpu_busy_ms_per_step'], 'ms busy', d['startup_s'])"
done | tee $OUT/attention-phi2.log
SMOKE_W=/tmp/smokew SMOKE_ONLY='^(compiled|resume = uninterrupted \(compile|fused projections)' timeout 300 bash scripts/gpu_smoke.sh 2>&1 | tail -8
grep "largest relative\|bit for bit\|identical" $OUT/smoke.log | head
mv $OUT/smoke.log $OUT/smoke-part3.log
