#!/usr/bin/env bash
# twenty-fourth round, call 8, after the review's two changes to training/step.py (timed_step as loop_step with no
# next step; train_step's refusal before taking the queued step): the smoke's resume check through queued captured
# steps with the six options, and the tuner's check (loop_step)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env8.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
SMOKE_W=/tmp/smokew8 SMOKE_ONLY='^(resume = uninterrupted \(fused projections\)|tune \(budget\))$' timeout 200 bash scripts/gpu_smoke.sh 2>&1 | tail -4
mv $OUT/smoke.log $OUT/smoke-call8.log 2>/dev/null
