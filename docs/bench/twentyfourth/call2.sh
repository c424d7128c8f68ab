#!/usr/bin/env bash
# twenty-fourth round, call 2: the rest of the smoke that reaches 2cddb57's change (torch's generators saved and
# restored by run.checkpoint, which the queued step, checkpoints and the tuner's loop_step use), beside call 1's
# three resume checks: a Phi-2 run stopped and resumed, the compiled resume bit for bit, the tuner, the 8-bit
# AdamW kernel against bitsandbytes, the dequantized base, the dry run.
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env2.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
SMOKE_W=/tmp/smokew2 SMOKE_ONLY='^(train phi-2\+resume|adamw8bit kernel = bitsandbytes|dequantized = 4-bit|resume = uninterrupted \(compile\)|train --dry-run|tune \(budget\))$' \
  timeout 560 bash scripts/gpu_smoke.sh 2>&1 | tail -8
mv $OUT/smoke.log $OUT/smoke-call2.log 2>/dev/null
