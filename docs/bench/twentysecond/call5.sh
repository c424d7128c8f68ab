#!/usr/bin/env bash
# twenty-second round, call 5: after our three Triton kernels moved to one lazy definition (infra/lazy_triton.py):
# the 8-bit AdamW kernel against bitsandbytes' CUDA kernel, and the smoke's resume checks through all three kernels
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
timeout 150 python3 scripts/check_adamw8bit.py 2>&1 | tee $OUT/check-adamw8bit.log | tail -3
SMOKE_W=/tmp/smokew SMOKE_ONLY='^resume = uninterrupted( \(fused projections\))?$' timeout 240 bash scripts/gpu_smoke.sh 2>&1 | tail -4
mv $OUT/smoke.log $OUT/smoke-call5.log 2>/dev/null; grep "bit for bit\|differ" $OUT/smoke-call5.log | head
