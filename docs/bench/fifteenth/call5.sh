#!/usr/bin/env bash
# fifteenth round, call E: the score command with a --fused-rope checkpoint, the previous revision (.base) and this one
# alternating, with its own split of the time (--metrics-out); --compile with and without --fused-rope, 40 steps, ABBA
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
head -n 2000 $D/test.jsonl > /tmp/test2000.jsonl
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 200 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 64 --epochs 1 --output-dir /tmp/runs/rope > /dev/null 2>&1 || echo "train failed"
S="--checkpoint /tmp/runs/rope --input /tmp/test2000.jsonl --quiet"
python3 -m nli_qlora.score $S --output /tmp/p-warm.jsonl
for k in 1 2 3; do
  (cd .base && /usr/bin/time -f "score base-$k %e s shell" python3 -m nli_qlora.score $S --output /tmp/p-base-$k.jsonl --metrics-out /tmp/m-base-$k.json)
  /usr/bin/time -f "score new-$k %e s shell" python3 -m nli_qlora.score $S --output /tmp/p-new-$k.jsonl --metrics-out /tmp/m-new-$k.json
done > $OUT/score-ab.log 2>&1
cmp /tmp/p-base-1.jsonl /tmp/p-new-1.jsonl && echo "score: the same predictions" >> $OUT/score-ab.log
for k in 1 2 3; do for s in base new; do python3 -c "import json; m=json.load(open('/tmp/m-$s-$k.json')); print('$s-$k', 'before_rows_s', m['before_rows_s'], 'rows_s', m['seconds'], 'process_s', m['process_s'], 'rows/s', m['rows_per_s'])"; done; done >> $OUT/score-ab.log
cat $OUT/score-ab.log
P="--batch 8 --seq 64 --steps 40 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --compile"
for f in "" "--fused-rope" "--fused-rope" ""; do
  timeout 120 python3 scripts/profile_step.py --model random:$TOK --tokenizer $TOK $P $f 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print('smollm2 compile', '$f', d['median_step_ms'], d['gpu_kernels_per_step'], d['gpu_busy_ms_per_step'])"
done 2>&1 | tee $OUT/compile-rope.log
