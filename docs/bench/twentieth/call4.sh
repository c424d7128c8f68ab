#!/usr/bin/env bash
# twentieth round, call 4: the whole SmolLM2 command at this round's end (the figure worker and the Triton LoRA dropout)
# against .base (65e21b6), alternating, two pairs; then this round with --pad-to-multiple 64, two runs
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1
(cd .base && python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm-base > /dev/null 2>&1)
for k in 1 2; do
  (cd .base && /usr/bin/time -f "base-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/base-$k)
  /usr/bin/time -f "new-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/new-$k
  /usr/bin/time -f "pad64-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --pad-to-multiple 64 --output-dir /tmp/runs/pad64-$k
done > $OUT/whole-ab.log 2>&1
python3 scripts/run_timeline.py /tmp/runs/{base,new,pad64}-{1,2} | tee -a $OUT/whole-ab.log
tar -czf $OUT/whole-ab.tgz -C /tmp/runs $(cd /tmp/runs && ls -d base-? new-? pad64-? | sed 's|$|/metrics.jsonl|')
grep shell $OUT/whole-ab.log
