#!/usr/bin/env bash
# twenty-third round, call 6: the tuner timing its candidates as the loop runs them (loop_step): the smoke's tune
# check, and the tuner on SmolLM2's configuration (random weights, the six options) at batch 8, 16 and 32
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env6.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=$PWD/.devdata/smollm2-tokenizer; D=$PWD/.devdata/snli
SMOKE_W=/tmp/smokew6 SMOKE_ONLY='^tune' timeout 200 bash scripts/gpu_smoke.sh 2>&1 | tail -3
mv $OUT/smoke.log $OUT/smoke-call6.log 2>/dev/null
timeout 200 python3 -m nli_qlora.tune --model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl \
  --validation-file $D/validation.jsonl --test-file $D/test.jsonl --batch-sizes 8 16 32 --dequantize-base \
  --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope --steps 30 \
  --out /tmp/tuned.yaml 2>&1 | tail -20 | tee $OUT/tune-smollm2.log
