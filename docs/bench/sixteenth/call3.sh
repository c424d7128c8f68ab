#!/usr/bin/env bash
# sixteenth round, call 3: Phi-2's shapes in the benchmark suite with each attention kernel (auto before flash at each
# batch size), the memory each case found at its start; the smoke's new check; the GGUF's first half into /tmp
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
cp .gguf_a/smol.partaa /tmp/
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
MODELS=phi-2 timeout 280 bash scripts/gpu_runs.sh attention-bench 2>&1 | tail -8
SMOKE_W=/tmp/smokew SMOKE_ONLY='^attention' timeout 120 bash scripts/gpu_smoke.sh 2>&1 | tail -3
grep -A8 "^=== attention" $OUT/smoke.log | grep -v Warning | tail -7; mv $OUT/smoke.log $OUT/smoke-attention.log
