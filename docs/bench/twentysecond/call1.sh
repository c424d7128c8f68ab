#!/usr/bin/env bash
# twenty-second round, call 1: where the start-up goes on the GPU host, by wall-clock sampling
# (sample_command.py) of the whole SmolLM2 command and of the score command on 2,000 rows, after a warm-up;
# two plain runs of each for the timeline; -X importtime of the train command; the 8-bit AdamW kernel's
# check again (its zero-block change had not run on a GPU)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
S=docs/bench/twentysecond/sample_command.py
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1
head -2000 $D/test.jsonl > /tmp/test2000.jsonl
python3 -m nli_qlora.score --checkpoint /tmp/runs/warm --input /tmp/test2000.jsonl --output /tmp/p-warm.jsonl --quiet
for k in 1 2; do
  /usr/bin/time -f "plain-$k %e s shell" python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/plain-$k
  /usr/bin/time -f "sampled-$k %e s shell" python3 $S $OUT/sample-train-$k nli_qlora.train $ARGS --output-dir /tmp/runs/sampled-$k
done > $OUT/whole.log 2>&1
for k in 1 2; do
  /usr/bin/time -f "score plain-$k %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/plain-1 --input /tmp/test2000.jsonl --output /tmp/p-$k.jsonl --quiet
  /usr/bin/time -f "score sampled-$k %e s shell" python3 $S $OUT/sample-score-$k nli_qlora.score --checkpoint /tmp/runs/plain-1 --input /tmp/test2000.jsonl --output /tmp/ps-$k.jsonl --quiet
done >> $OUT/whole.log 2>&1
python3 -X importtime -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/imp 2> $OUT/importtime-train.txt >/dev/null
gzip $OUT/importtime-train.txt
python3 scripts/run_timeline.py /tmp/runs/{plain,sampled}-{1,2} | tee -a $OUT/whole.log
gzip $OUT/*.folded
timeout 150 python3 scripts/check_adamw8bit.py 2>&1 | tee $OUT/check-adamw8bit.log | tail -3
grep shell $OUT/whole.log
