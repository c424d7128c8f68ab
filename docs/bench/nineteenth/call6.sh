#!/usr/bin/env bash
# nineteenth round, call 6 (the session's last device time): the smoke's Phi-2 checks of the changed path: groups of four
# members with biases (q, k, v, fc1), dropout off (the kernel without masks) and on (with masks; 99 rows: a last batch
# shape first met inside a capture)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
SMOKE_W=/tmp/smokew6 SMOKE_ONLY='^(fused projections = fused lora \(phi-2|fused rope = transformers rope \(phi-2)' timeout 130 bash scripts/gpu_smoke.sh 2>&1 | tail -4
grep "largest relative" $OUT/smoke.log; mv $OUT/smoke.log $OUT/smoke-call6.log
