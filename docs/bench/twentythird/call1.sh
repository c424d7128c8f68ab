#!/usr/bin/env bash
# twenty-third round, call 1: the next step's forward and backward queued before the read-back. The smoke's three
# resume checks first (the captured path, bit for bit); queueprobe.py on SmolLM2 and Phi-2 shapes (queued or not,
# the paged prefetch or not);
# the whole SmolLM2 command against .base (40f225e), alternating, two pairs. (The GGUF half's copy below failed:
# .gguf_a was not carried; the GGUF came in three pieces before call 4.)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
cp .gguf_a/smol.partaa /tmp/
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
SMOKE_W=/tmp/smokew SMOKE_ONLY='^resume = uninterrupted( \(bf16 lora\)| \(fused projections\))?$' timeout 240 bash scripts/gpu_smoke.sh 2>&1 | tail -4
mv $OUT/smoke.log $OUT/smoke-call1.log 2>/dev/null
for m in random:$TOK random:phi-2; do
  timeout 150 python3 docs/bench/twentythird/queueprobe.py --model $m --tokenizer $TOK --steps 100 --rounds 3 2>>$OUT/probe.err
done | tee $OUT/queueprobe.jsonl
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
