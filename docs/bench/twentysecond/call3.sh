#!/usr/bin/env bash
# (recorded as run: its tree carried --eval-batch-tokens, measured and taken out; docs/benchmarks.md, twenty-second round)
# twenty-second round, call 3: evaluation batches of up to 1,024 rows and 65,536 padded tokens (new defaults)
# against 256 rows (.base, f4b6050), alternating: the score command on 2,000 SNLI rows (three pairs) and the
# whole SmolLM2 command (two pairs); the memory of an evaluation against a training step on Phi-2's shapes
# (batch 8, 2,000 test rows, no zero-shot evaluation: the step records' peak is training's, run_end's adds the
# evaluations), at both settings, with the dry run's estimate; then the smoke's resume checks
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
SIX="--quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 $SIX"
python3 -m nli_qlora.train $ARGS --train-size 64 --epochs 1 --output-dir /tmp/runs/ckpt > /dev/null 2>&1
(cd .base && python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm-base > /dev/null 2>&1)
head -2000 $D/test.jsonl > /tmp/test2000.jsonl; head -16 $D/test.jsonl > /tmp/test16.jsonl
(cd .base && python3 -m nli_qlora.score --checkpoint /tmp/runs/ckpt --input /tmp/test16.jsonl --output /tmp/w-base.jsonl --quiet)
python3 -m nli_qlora.score --checkpoint /tmp/runs/ckpt --input /tmp/test16.jsonl --output /tmp/w-new.jsonl --quiet
for k in 1 2 3; do
  (cd .base && /usr/bin/time -f "score base-$k %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/ckpt --input /tmp/test2000.jsonl --output /tmp/p-base-$k.jsonl --metrics-out /tmp/m-base-$k.json --quiet)
  /usr/bin/time -f "score new-$k %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/ckpt --input /tmp/test2000.jsonl --output /tmp/p-new-$k.jsonl --metrics-out /tmp/m-new-$k.json --quiet
done > $OUT/score-ab.log 2>&1
python3 - <<'PY' | tee -a $OUT/score-ab.log
import json
for k in (1, 2, 3):
    a = [json.loads(l) for l in open(f"/tmp/p-base-{k}.jsonl")]; b = [json.loads(l) for l in open(f"/tmp/p-new-{k}.jsonl")]
    ma, mb = json.load(open(f"/tmp/m-base-{k}.json")), json.load(open(f"/tmp/m-new-{k}.json"))
    dp = max(abs(x["probabilities"][c] - y["probabilities"][c]) for x, y in zip(a, b) for c in x["probabilities"])
    print(f"pair {k}: {sum(x['predicted'] == y['predicted'] for x, y in zip(a, b))} of {len(a)} predictions the same, "
          f"largest probability difference {dp:.2e}; process_s {ma.get('process_s')} / {mb.get('process_s')}")
PY
for k in 1 2; do
  (cd .base && /usr/bin/time -f "base-$k %e s shell" timeout 60 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/base-$k)
  /usr/bin/time -f "new-$k %e s shell" timeout 60 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/new-$k
done > $OUT/whole-ab.log 2>&1
python3 scripts/run_timeline.py /tmp/runs/{base,new}-{1,2} | tee -a $OUT/whole-ab.log
PHI="--model random:phi-2 --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --train-size 16 --epochs 1 --no-zero-shot-eval $SIX"
timeout 120 python3 -m nli_qlora.train $PHI --output-dir /tmp/runs/phi-new > $OUT/phi.log 2>&1
timeout 120 python3 -m nli_qlora.train $PHI --eval-batch-size 256 --eval-batch-tokens 0 --output-dir /tmp/runs/phi-256 >> $OUT/phi.log 2>&1
python3 -m nli_qlora.train $PHI --dry-run --dry-run-json /tmp/phi-dry.json --memory-budget A40 > /dev/null 2>&1
python3 - <<'PY' | tee -a $OUT/phi.log
import json
est = json.load(open("/tmp/phi-dry.json"))["memory"]
print(f"dry run: micro-batch {est['micro_batch']} x {est['seq_len']}: {est['total_gb']} GB estimated")
for run in ("phi-new", "phi-256"):
    recs = [json.loads(l) for l in open(f"/tmp/runs/{run}/metrics.jsonl")]
    steps = [r for r in recs if r["event"] == "step"]; end = recs[-1]
    evals = [(r["split"], r["eval_time_s"]) for r in recs if r["event"] == "eval"]
    print(f"{run}: training steps' peak {max(s['gpu_mem_peak_gb'] for s in steps)} GB, run_end peak {end.get('gpu_mem_peak_gb')} GB, evals {evals}")
PY
SMOKE_W=/tmp/smokew SMOKE_ONLY='^resume = uninterrupted( \(fused projections\))?$' timeout 300 bash scripts/gpu_smoke.sh 2>&1 | tail -4
mv $OUT/smoke.log $OUT/smoke-call3.log 2>/dev/null; grep "bit for bit\|differ\|PASS\|FAIL" $OUT/smoke-call3.log | head
grep shell $OUT/score-ab.log $OUT/whole-ab.log
