#!/usr/bin/env bash
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
python3 -m pytest tests/test_fused_norm.py -q -p no:cacheprovider -n 0 2>&1 | tail -2
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1
for k in 4 5; do
  /usr/bin/time -f "plain-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/plain-$k
  /usr/bin/time -f "norm-$k %e s shell" python3 -m nli_qlora.train $ARGS --fused-norm --output-dir /tmp/runs/norm-$k
done > $OUT/whole-ab2.log 2>&1
for r in plain-4 norm-4 plain-5 norm-5; do gzip -c /tmp/runs/$r/metrics.jsonl > $OUT/w-$r.jsonl.gz; done
python3 - <<'PY'
import json, gzip, os, statistics
for r in ["plain-4", "norm-4", "plain-5", "norm-5"]:
    rs = [json.loads(l) for l in gzip.open(os.environ["OUT"] + f"/w-{r}.jsonl.gz")]
    s, e = rs[0], rs[-1]
    st = [x for x in rs if x["event"] == "step"]
    print(r, "norms", s["model"].get("fused_norms"), "run_start", round(s["time"] - s["process_start"], 2), "run_end", e.get("process_wall_s"),
          "median_step_ms", round(statistics.median(x["step_time_s"] for x in st if not x["captured"]) * 1e3, 2),
          "captures_s", round(sum(x["step_time_s"] for x in st if x["captured"]), 2),
          "evals_s", round(sum(x["eval_time_s"] for x in rs if x["event"] == "eval"), 2), "final_loss", st[-1]["loss"])
PY
grep shell $OUT/whole-ab2.log
