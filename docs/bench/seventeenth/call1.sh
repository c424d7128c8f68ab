#!/usr/bin/env bash
# seventeenth round, call 1: the sixteenth round's fixes on the GPU (the bench suites' smoke with the checkpointing
# fix, the reordered attention check, the compiled checks), `compiled = eager` again on the warm inductor cache;
# then where a captured step's wall time goes between its kernels (stepprobe.py)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/
SMOKE_W=/tmp/smokew SMOKE_ONLY='^(bench|attention|compiled)' timeout 300 bash scripts/gpu_smoke.sh 2>&1 | tail -6
mv $OUT/smoke.log $OUT/smoke-fixes.log
SMOKE_W=/tmp/smokew2 SMOKE_ONLY='^compiled = eager' timeout 150 bash scripts/gpu_smoke.sh 2>&1 | tail -2
mv $OUT/smoke.log $OUT/smoke-compiled-warm.log
for m in "random:$TOK paged_adamw_8bit" "random:$TOK adamw_8bit" "random:phi-2 paged_adamw_8bit"; do
  set -- $m
  timeout 120 python3 docs/bench/seventeenth/stepprobe.py --model $1 --tokenizer $TOK --optimizer $2 2>$OUT/probe-err.log \
    | tee -a $OUT/stepprobe.jsonl || tail -5 $OUT/probe-err.log
done
