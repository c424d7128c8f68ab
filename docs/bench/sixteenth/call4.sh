#!/usr/bin/env bash
# sixteenth round, call 4 (right after call 3: the GGUF's first half in /tmp): the GGUF joined; smoke part one, and the
# new check with its bound mended (the memory after each trainer varied by 0.3 MiB: not a workspace)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
OUT=$OUT bash scripts/gpu_runs.sh gguf-b | tail -1
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
SMOKE_W=/tmp/smokew SMOKE_ONLY='^(attention|gguf|train smollm2|train phi-2|resume = uninterrupted$|resume = uninterrupted \(bf16|dequantized|bf16 lora|fused lora|fused norm|fused rope)' timeout 420 bash scripts/gpu_smoke.sh 2>&1 | tail -16
grep "largest relative\|bit for bit\|allocated after" $OUT/smoke.log | head -12
mv $OUT/smoke.log $OUT/smoke-part1.log
