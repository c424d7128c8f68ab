#!/usr/bin/env bash
# twenty-fourth round, call 4: the smoke's bench suites (smoke sizes) on this tree
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env4.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
SMOKE_W=/tmp/smokew4 SMOKE_ONLY='^bench suites' timeout 330 bash scripts/gpu_smoke.sh 2>&1 | tail -4
mv $OUT/smoke.log $OUT/smoke-call4.log 2>/dev/null
