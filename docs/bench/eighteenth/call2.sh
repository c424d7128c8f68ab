#!/usr/bin/env bash
# eighteenth round, call 2: call 1 with the fixes (the working copies published by a cast and one gather of blocks; a group of one
# returned whole, and traced as --fused-lora under --compile) and Liger-Kernel's fused gate-up SwiGLU, against (.base,
# a630914), alternating: the captured step's parts (stepprobe.py) and its kernels (profile_step.py), SmolLM2's and
# Phi-2's configurations with random weights, batch 8 x 64; then the smoke's fused-projections and resume checks
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/
P="--batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-rope"
for k in 1 2; do for m in random:$TOK random:phi-2; do for tree in .base .; do
  n=$( [ $m = random:phi-2 ] && echo "" || echo "--fused-norm" )
  (cd $tree && timeout 100 python3 $OLDPWD/docs/bench/seventeenth/stepprobe.py --model $m --tokenizer $TOK 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); a=d['as-is']; print('$tree', '$m'[-10:], 'wall', [x['wall'] for x in a], 'graph', [x['g_graph'] for x in a], 'timed', d['timed_step_ms_per_step'], 'b2b', d['back-to-back_ms_per_step'], 'publish', [x.get('g_publish') for x in a])")
  if [ $k = 1 ]; then (cd $tree && timeout 100 python3 scripts/profile_step.py --model $m --tokenizer $TOK $P $n 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print('$tree', '$m'[-10:], 'profile', d['median_step_ms'], 'ms', d['gpu_kernels_per_step'], 'kernels', d['gpu_busy_ms_per_step'], 'ms busy')"); fi
done; done; done 2>&1 | tee $OUT/runs-ab.log
SMOKE_W=/tmp/smokew SMOKE_ONLY='^(fused projections|resume = uninterrupted \(fused|compiled = eager)' timeout 330 bash scripts/gpu_smoke.sh 2>&1 | tail -8
grep "largest relative\|bit for bit\|identical" $OUT/smoke.log | head -20; mv $OUT/smoke.log $OUT/smoke-call2.log
