#!/usr/bin/env bash
# twenty-third round, call 5 (warm): two more pairs of the whole SmolLM2 command against .base (40f225e), alternating
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env5.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
for k in 3 4; do
  /usr/bin/time -f "new-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/new-$k
  (cd .base && /usr/bin/time -f "base-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/base-$k)
done > $OUT/whole-ab5.log 2>&1
python3 scripts/run_timeline.py /tmp/runs/{base,new}-{3,4} | tee -a $OUT/whole-ab5.log
tar -czf $OUT/whole-ab5.tgz -C /tmp/runs $(cd /tmp/runs && ls -d base-[34] new-[34] | sed 's|$|/metrics.jsonl|')
grep shell $OUT/whole-ab5.log
