#!/usr/bin/env bash
# session 13, call A: split cache A/B (01097dc in .base vs HEAD), eval/score breakdown, capture vs eager per shape
cp .gguf_a/smol.partaa /tmp/ 2>/dev/null
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz && tar -xJf .x/base.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections"
python3 .x/shapeprobe.py random:$TOK $TOK > $OUT/shape.log 2>&1
for k in 1 2; do
  (cd .base && PYTHONPATH=$OLDPWD/.site:/tmp/site:$PWD NLI_QLORA_CACHE=/tmp/cache-old /usr/bin/time -f "old-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/old-$k)
  NLI_QLORA_CACHE=/tmp/cache-new /usr/bin/time -f "new-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/new-$k
done > $OUT/whole-ab.log 2>&1
NLI_QLORA_CACHE=/tmp/cache-new python3 .x/evalprobe.py train $ARGS --output-dir /tmp/runs/probe > $OUT/evalprobe-train.log 2>&1
head -n 2000 $D/test.jsonl > /tmp/test2000.jsonl
for k in 1 2; do python3 .x/evalprobe.py score --checkpoint /tmp/runs/new-1 --input /tmp/test2000.jsonl --output /tmp/pred.jsonl --metrics-out $OUT/score-probe-$k.json; done > $OUT/evalprobe-score.log 2>&1
for k in 1 2; do /usr/bin/time -f "score %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/new-1 --input /tmp/test2000.jsonl --output /tmp/pred.jsonl --quiet --metrics-out $OUT/score-$k.json; done > $OUT/score.log 2>&1
tail -n 2 $OUT/score.log
for r in old-1 new-1 old-2 new-2 probe; do gzip -c /tmp/runs/$r/metrics.jsonl > $OUT/whole-$r.jsonl.gz; done
python3 - <<'PY'
import json, gzip, os
out = os.environ["OUT"]
for r in ["old-1", "new-1", "old-2", "new-2", "probe"]:
    rs = [json.loads(l) for l in gzip.open(f"{out}/whole-{r}.jsonl.gz")]
    s, e = rs[0], rs[-1]
    st = [x for x in rs if x["event"] == "step"]
    cap = [round(x["step_time_s"], 3) for x in st if x["captured"]]
    import statistics
    evals = [(x["split"], x["epoch"], x["eval_time_s"]) for x in rs if x["event"] == "eval"]
    print(r, "run_start_at", round(s["time"] - s["process_start"], 2), s["startup"], "run_end", e.get("process_wall_s"),
          "median_step_ms", round(statistics.median(x["step_time_s"] for x in st) * 1e3, 2), "captures", cap, "evals", evals)
PY
grep shell $OUT/whole-ab.log
cat $OUT/shape.log | grep SHAPE
grep -h -E "PREDICT|ENCODE|SCORE_STREAM" $OUT/evalprobe-train.log $OUT/evalprobe-score.log | cut -c1-900
grep -h "rows_per_s\|process_s\|before_rows\|\"seconds" $OUT/score-probe-1.json $OUT/score-1.json $OUT/score-2.json
