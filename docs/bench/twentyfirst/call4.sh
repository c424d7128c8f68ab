#!/usr/bin/env bash
# twenty-first round, call 4 (the last of the session's device time, after refused starts): first the smoke's resume
# check with the six options on this tree (the captured step's inputs copied from the host batch, the update by
# the kernel); then where the step goes with the paged states' prefetch before the update and without
# (hostprobe.py, alternating inside one process); then the kernel's check at the presets' buffer sizes
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/
SMOKE_W=/tmp/smokew4 SMOKE_ONLY='^resume = uninterrupted \(fused projections\)$' timeout 120 bash scripts/gpu_smoke.sh 2>&1 | tail -3
mv $OUT/smoke.log $OUT/smoke-call4.log; grep "bit for bit\|differ" $OUT/smoke-call4.log
timeout 100 python3 docs/bench/twentyfirst/hostprobe.py --model random:$TOK --tokenizer $TOK 2>>$OUT/probe.err | tee $OUT/hostprobe.jsonl
timeout 60 python3 scripts/check_adamw8bit.py 2>&1 | tee $OUT/check-adamw8bit.log
