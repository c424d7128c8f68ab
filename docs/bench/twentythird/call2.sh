#!/usr/bin/env bash
# twenty-third round, call 2 (warm after call 1): the rest of the smoke's training checks on the queued step,
# the compiled ones included; not the GGUF's (no GGUF carried)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env2.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
SMOKE_W=/tmp/smokew2 SMOKE_ONLY='^(train phi-2|adamw8bit|dequantized|bf16 lora|fused|compiled|resume = uninterrupted \(compile|attention|bench suites|tune|train --dry-run|random:phi-2)' timeout 580 bash scripts/gpu_smoke.sh 2>&1 | tail -24
mv $OUT/smoke.log $OUT/smoke-call2.log 2>/dev/null
