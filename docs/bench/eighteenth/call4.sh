#!/usr/bin/env bash
# eighteenth round, call 4: the GPU smoke's second part (dry run, tuner, score, dashboard, peer, random weights, the
# benchmark suites at smoke size: their cases turn --fused-projections, and with it the fused SwiGLU, on and off on one model)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
SMOKE_W=/tmp/smokew SMOKE_ONLY='^(train --dry-run|tune|score|tui|peer|random:phi-2|bench|attention)' timeout 520 bash scripts/gpu_smoke.sh 2>&1 | tail -14
mv $OUT/smoke.log $OUT/smoke-part2.log
