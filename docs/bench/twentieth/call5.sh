#!/usr/bin/env bash
# twentieth round, call 5: the score command on 2,000 SNLI rows at this round's end against .base (65e21b6), alternating,
# two pairs, on a checkpoint of a short run of this tree (six options, random weights)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 100 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 64 --epochs 1 --output-dir /tmp/runs/ckpt > $OUT/train.log 2>&1
head -2000 $D/test.jsonl > /tmp/test2000.jsonl; head -16 $D/test.jsonl > /tmp/test16.jsonl
(cd .base && python3 -m nli_qlora.score --checkpoint /tmp/runs/ckpt --input /tmp/test16.jsonl --output /tmp/w-base.jsonl --quiet)
python3 -m nli_qlora.score --checkpoint /tmp/runs/ckpt --input /tmp/test16.jsonl --output /tmp/w-new.jsonl --quiet
for k in 1 2; do
  (cd .base && /usr/bin/time -f "score base-$k %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/ckpt --input /tmp/test2000.jsonl --output /tmp/p-base-$k.jsonl --quiet)
  /usr/bin/time -f "score new-$k %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/ckpt --input /tmp/test2000.jsonl --output /tmp/p-new-$k.jsonl --quiet
done > $OUT/score-ab.log 2>&1
python3 - <<'PY' | tee -a $OUT/score-ab.log
import json
a = [json.loads(l) for l in open("/tmp/p-base-1.jsonl")]; b = [json.loads(l) for l in open("/tmp/p-new-1.jsonl")]
print(f"score: {sum(x['predicted'] == y['predicted'] for x, y in zip(a, b))} of {len(a)} predictions the same")
PY
cat $OUT/score-ab.log
