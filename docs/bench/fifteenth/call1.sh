#!/usr/bin/env bash
# fifteenth round, call A: smoke part three (the compiled checks); the GGUF's first half into /tmp
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
cp .gguf_a/smol.partaa /tmp/
source scripts/gpu_env.sh > $OUT/env.log 2>&1; cat $OUT/env.log | tail -2
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
SMOKE_W=/tmp/smokew SMOKE_ONLY='^(compiled|resume = uninterrupted \(compile|fused projections)' bash scripts/gpu_smoke.sh 2>&1 | tail -8
grep "largest relative\|bit for bit\|identical" $OUT/smoke.log | head
mv $OUT/smoke.log $OUT/smoke-part3.log
