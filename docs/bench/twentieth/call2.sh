#!/usr/bin/env bash
# twentieth round, call 2: the same A/B as call 1 with the figure worker (run.figure_worker) started as training begins
# (call 1 started it at the final test evaluation), against .base (65e21b6: matplotlib imported on a thread of the command),
# alternating, three pairs
# then the new tree with --pad-to-multiple 64, three runs
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1
(cd .base && python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm-base > /dev/null 2>&1)
for k in 1 2 3; do
  (cd .base && /usr/bin/time -f "base-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/base-$k)
  /usr/bin/time -f "new-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/new-$k
done > $OUT/whole-ab.log 2>&1
for k in 1 2 3; do for m in 64; do
  /usr/bin/time -f "pad$m-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --pad-to-multiple $m --output-dir /tmp/runs/pad$m-$k
done; done > $OUT/whole-pad.log 2>&1
echo "workers left: $(pgrep -fc nli_qlora.run.figure_worker)" | tee -a $OUT/whole-ab.log
python3 scripts/run_timeline.py /tmp/runs/{base,new}-{1,2,3} | tee -a $OUT/whole-ab.log
python3 scripts/run_timeline.py /tmp/runs/pad64-{1,2,3} | tee -a $OUT/whole-pad.log
tar -czf $OUT/whole-ab.tgz -C /tmp/runs $(cd /tmp/runs && ls -d base-? new-? pad*-? | sed 's|$|/metrics.jsonl|')
grep shell $OUT/whole-ab.log $OUT/whole-pad.log
