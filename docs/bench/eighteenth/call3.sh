#!/usr/bin/env bash
# eighteenth round, call 3: the previous revision (.base, a630914) and this one (the working copies in the groups'
# order, groups of one, Liger-Kernel's fused gate-up SwiGLU) alternating, after one warm-up run: the captured step
# and its kernels at batch 8 x 64 (SmolLM2's shapes), the whole SmolLM2 command (random weights, full SNLI files,
# 2,000 test rows, the six options), the score command on 2,000 rows, the captured step at batch 64; then the smoke's
# SmolLM2 checks of the grouped update, the resume with the six options and the fused rope
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
head -n 2000 $D/test.jsonl > /tmp/test2000.jsonl
P="--batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-rope --fused-norm"
for tree in .base . .base .; do
  (cd $tree && timeout 100 python3 $OLDPWD/docs/bench/seventeenth/stepprobe.py --model random:$TOK --tokenizer $TOK 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); a=d['as-is']; print('$tree', 'wall', [x['wall'] for x in a], 'graph', [x['g_graph'] for x in a], 'timed', d['timed_step_ms_per_step'], 'publish', [x.get('g_publish') for x in a])")
done 2>&1 | tee $OUT/runs-ab.log
for tree in .base .; do (cd $tree && timeout 100 python3 scripts/profile_step.py --model random:$TOK --tokenizer $TOK $P 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print('$tree', 'profile', d['median_step_ms'], 'ms', d['gpu_kernels_per_step'], 'kernels', d['gpu_busy_ms_per_step'], 'ms busy')"); done 2>&1 | tee -a $OUT/runs-ab.log
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1
for k in 1 2; do
  (cd .base && /usr/bin/time -f "base-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/base-$k)
  /usr/bin/time -f "new-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/new-$k
done > $OUT/whole-ab.log 2>&1
for k in 1 2; do
  (cd .base && /usr/bin/time -f "score base-$k %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/new-1 --input /tmp/test2000.jsonl --output /tmp/p-base-$k.jsonl --quiet)
  /usr/bin/time -f "score new-$k %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/new-1 --input /tmp/test2000.jsonl --output /tmp/p-new-$k.jsonl --quiet
done >> $OUT/whole-ab.log 2>&1
python3 - >> $OUT/whole-ab.log <<'PY'
import json
a = [json.loads(l) for l in open("/tmp/p-base-1.jsonl")]; b = [json.loads(l) for l in open("/tmp/p-new-1.jsonl")]
print(f"score: {sum(x['predicted'] == y['predicted'] for x, y in zip(a, b))} of {len(a)} predictions the same")
PY
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
          "first_step", round(st[0]["time"] - s["process_start"], 2),
          "evals_s", round(sum(x["eval_time_s"] for x in ev), 2),
          "median_step_ms", round(statistics.median(x["step_time_s"] for x in st if not x["captured"]) * 1e3, 2),
          "captures_s", round(sum(x["step_time_s"] for x in st if x["captured"]), 2), "run_end", e.get("process_wall_s"), "swiglus", s["model"].get("fused_swiglus"),
          "final_loss", st[-1]["loss"], "test_bacc", [x for x in ev if x["split"] == "test"][-1]["balanced_accuracy"])
PY
grep shell $OUT/whole-ab.log; grep "predictions the same" $OUT/whole-ab.log
for m in random:$TOK; do for tree in .base .; do  # batch 64
  (cd $tree && timeout 100 python3 $OLDPWD/docs/bench/seventeenth/stepprobe.py --model $m --tokenizer $TOK --batch 64 --steps 30 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); a=d['as-is']; print('$tree', '$m'[-10:], 'b64 wall', [x['wall'] for x in a], 'graph', [x['g_graph'] for x in a], 'timed', d['timed_step_ms_per_step'])")
done; done 2>&1 | tee $OUT/runs-b64.log
SMOKE_W=/tmp/smokew SMOKE_ONLY='^(fused projections = fused lora \(smollm2|resume = uninterrupted \(fused|fused rope = transformers rope$)' timeout 240 bash scripts/gpu_smoke.sh 2>&1 | tail -5
grep "largest relative" $OUT/smoke.log; mv $OUT/smoke.log $OUT/smoke-smol.log
