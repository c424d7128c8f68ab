#!/usr/bin/env bash
# eighteenth round, call 6 (right after `cp .gguf_a/* /tmp/` and `cp .gguf_b1/* /tmp/`: the GGUF's second half came in two
# pieces, the tree having grown past what one call carries beside a half): the GGUF joined;
# the smoke's part one, then the four checks of part two that read part one's run (call 4 ran them without it)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
mkdir -p .gguf_b && cat /tmp/part00 .gguf_b2/part01 > .gguf_b/smol.partab
OUT=$OUT bash scripts/gpu_runs.sh gguf-b | tail -1
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
SMOKE_W=/tmp/smokew SMOKE_ONLY='^(gguf|train smollm2|train phi-2|resume = uninterrupted$|resume = uninterrupted \(bf16|dequantized|bf16 lora|fused lora|fused norm|fused rope|score|tui|peer)' timeout 380 bash scripts/gpu_smoke.sh 2>&1 | tail -18
grep "largest relative\|bit for bit" $OUT/smoke.log | head -12
mv $OUT/smoke.log $OUT/smoke-part1.log
