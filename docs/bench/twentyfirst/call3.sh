#!/usr/bin/env bash
# twenty-first round, call 3: the kernel's check with the weights' change compared beyond one unit in the last place;
# where this revision's step goes (hostprobe.py, twice); the whole SmolLM2 command against .base (5f19dd8),
# alternating, two pairs
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
timeout 150 python3 scripts/check_adamw8bit.py 2>&1 | tee $OUT/check-adamw8bit.log
for k in 1 2; do timeout 100 python3 docs/bench/twentyfirst/hostprobe.py --model random:$TOK --tokenizer $TOK 2>>$OUT/probe.err; done | tee $OUT/hostprobe.jsonl
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1
(cd .base && python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm-base > /dev/null 2>&1)
for k in 1 2; do
  (cd .base && /usr/bin/time -f "base-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/base-$k)
  /usr/bin/time -f "new-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/new-$k
done > $OUT/whole-ab.log 2>&1
python3 scripts/run_timeline.py /tmp/runs/{base,new}-{1,2} | tee -a $OUT/whole-ab.log
tar -czf $OUT/whole-ab.tgz -C /tmp/runs $(cd /tmp/runs && ls -d base-? new-? | sed 's|$|/metrics.jsonl|')
grep shell $OUT/whole-ab.log
