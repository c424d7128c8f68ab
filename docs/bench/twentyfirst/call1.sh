#!/usr/bin/env bash
# twenty-first round, call 1: the 8-bit AdamW update by our Triton kernel, queued before the step's read-back
# (training/adamw8bit_kernel.py). Its update against bitsandbytes' CUDA kernel (scripts/check_adamw8bit.py); the
# previous revision (.base, 5f19dd8) and this one alternating: the step as the loop runs it (stepprobe.py's
# timed_step and back-to-back), SmolLM2's configuration with random weights at batch 8 x 64 and Phi-2's; this
# one's kernels (profile_step.py); then the smoke's resume checks, which now step through the kernel
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/
P="--batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-rope --fused-norm"
timeout 150 python3 scripts/check_adamw8bit.py 2>&1 | tee $OUT/check-adamw8bit.log
probe() {  # probe TREE MODEL: the loop's step, one line
  (cd $1 && timeout 100 python3 $OLDPWD/docs/bench/seventeenth/stepprobe.py --model $2 --tokenizer $TOK $P 2>>$OUT/probe.err \
    | python3 -c "import json,sys; d=json.load(sys.stdin); a=d['as-is']; print('$1', '$2'[-10:], 'timed', d['timed_step_ms_per_step'], 'b2b', d['back-to-back_ms_per_step'], 'graph', [x['g_graph'] for x in a])")
}
for k in 1 2; do for tree in .base .; do probe $tree random:$TOK; done; done 2>&1 | tee $OUT/runs-ab.log
for tree in .base .; do probe $tree random:phi-2; done 2>&1 | tee -a $OUT/runs-ab.log
timeout 100 python3 scripts/profile_step.py --model random:$TOK --tokenizer $TOK $P --top 40 2>>$OUT/profile.err > $OUT/profile-new.json
python3 -c "import json; d=json.load(open('$OUT/profile-new.json')); print('profile', d['median_step_ms'], 'ms', d['gpu_kernels_per_step'], 'kernels', d['gpu_busy_ms_per_step'], 'ms busy', [(o['name'][:50], o['calls_per_step'], o['device_ms_per_step']) for o in d['top_ops'] if 'adamw' in o['name'].lower() or 'ptimizer' in o['name']])" | tee -a $OUT/runs-ab.log
SMOKE_W=/tmp/smokew1 SMOKE_ONLY='^resume = uninterrupted( \(bf16 lora\)| \(fused projections\))?$' timeout 240 bash scripts/gpu_smoke.sh 2>&1 | tail -5
mv $OUT/smoke.log $OUT/smoke-call1.log; grep "bit for bit\|differ" $OUT/smoke-call1.log
