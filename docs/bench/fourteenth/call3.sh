#!/usr/bin/env bash
# fourteenth round: --fused-rope on the H200: its smoke checks, profile_step beside it, the whole command A/B
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
python3 -m pytest tests/test_fused_rope.py -q -p no:cacheprovider -n 0 2>&1 | tail -2
SMOKE_W=/tmp/smokew SMOKE_ONLY='^fused rope' bash scripts/gpu_smoke.sh 2>&1 | tail -4
grep "largest relative" $OUT/smoke.log
P="--batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections"
for r in 1 2; do for f in "" "--fused-rope"; do
  python3 scripts/profile_step.py --model random:$TOK --tokenizer $TOK $P --fused-norm $f 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print('smollm2', '$f', d['median_step_ms'], d['gpu_kernels_per_step'], d['gpu_busy_ms_per_step'])"
  python3 scripts/profile_step.py --model random:phi-2 --tokenizer $TOK $P $f 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print('phi-2', '$f', d['median_step_ms'], d['gpu_kernels_per_step'], d['gpu_busy_ms_per_step'])"
done; done
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm"
python3 -m nli_qlora.train $ARGS --fused-rope --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1
for k in 1 2; do
  /usr/bin/time -f "plain-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/plain-$k
  /usr/bin/time -f "rope-$k %e s shell" python3 -m nli_qlora.train $ARGS --fused-rope --output-dir /tmp/runs/rope-$k
done > $OUT/whole-ab.log 2>&1
for r in plain-1 rope-1 plain-2 rope-2; do gzip -c /tmp/runs/$r/metrics.jsonl > $OUT/w-$r.jsonl.gz; done
python3 - <<'PY'
import json, gzip, os, statistics
for r in ["plain-1", "rope-1", "plain-2", "rope-2"]:
    rs = [json.loads(l) for l in gzip.open(os.environ["OUT"] + f"/w-{r}.jsonl.gz")]
    s, e = rs[0], rs[-1]
    st = [x for x in rs if x["event"] == "step"]
    print(r, "ropes", s["model"].get("fused_ropes"), "run_start", round(s["time"] - s["process_start"], 2), "run_end", e.get("process_wall_s"),
          "median_step_ms", round(statistics.median(x["step_time_s"] for x in st if not x["captured"]) * 1e3, 2),
          "captures_s", round(sum(x["step_time_s"] for x in st if x["captured"]), 2),
          "evals_s", round(sum(x["eval_time_s"] for x in rs if x["event"] == "eval"), 2), "final_loss", st[-1]["loss"],
          "test_bacc", [x for x in rs if x["event"] == "eval" and x["split"] == "test"][-1]["balanced_accuracy"])
PY
grep shell $OUT/whole-ab.log
