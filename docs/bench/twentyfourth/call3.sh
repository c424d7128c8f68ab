#!/usr/bin/env bash
# twenty-fourth round, call 3: the smoke's remaining checks that need no GGUF, on this tree (the GGUF's, the score
# command's, the dashboard's and the peer's need the file in three calls; left)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env3.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
SMOKE_W=/tmp/smokew3 SMOKE_ONLY='^(bf16 lora|fused lora|compiled|fused projections|fused norm|fused rope|random:phi-2|attention)' \
  timeout 470 bash scripts/gpu_smoke.sh 2>&1 | tail -16
mv $OUT/smoke.log $OUT/smoke-call3.log 2>/dev/null
