#!/usr/bin/env bash
# twentieth round, call 3: the previous revision (.base, 65e21b6) and this one (the groups' LoRA dropout in one Triton kernel
# from a seed per group and forward, model/lora_dropout.py) alternating: the captured step's parts (stepprobe.py) and its
# kernels (profile_step.py), SmolLM2's configuration with random weights at batch 8 x 64, Phi-2's at batch 8; then the smoke's
# checks of the changed path (the resume bit for bit with the six options; fused rope, whose last batch shape is first met
# inside a capture, where the groups fall back to torch's dropout)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/
P="--batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-rope --fused-norm"
probe() {  # probe TREE MODEL [ARGS]: the step's parts, one line
  (cd $1 && timeout 100 python3 $OLDPWD/docs/bench/seventeenth/stepprobe.py --model $2 --tokenizer $TOK "${@:3}" 2>>$OUT/probe.err \
    | python3 -c "import json,sys; d=json.load(sys.stdin); a=d['as-is']; print('$1', '$2'[-10:], '${*:3}', 'wall', [x['wall'] for x in a], 'graph', [x['g_graph'] for x in a], 'opt', [x['g_opt'] for x in a], 'timed', d['timed_step_ms_per_step'])")
}
for tree in . .base; do (cd $tree && timeout 100 python3 scripts/profile_step.py --model random:$TOK --tokenizer $TOK $P --top 40 2>>$OUT/profile.err > $OUT/profile-$([ $tree = . ] && echo new || echo base).json;
  python3 -c "import json; d=json.load(open('$OUT/profile-$([ $tree = . ] && echo new || echo base).json')); print('$tree', 'profile', d['median_step_ms'], 'ms', d['gpu_kernels_per_step'], 'kernels', d['gpu_busy_ms_per_step'], 'ms busy', [(o['name'][:40], o['calls_per_step'], o['device_ms_per_step']) for o in d['top_ops'] if 'dropout' in o['name']])"); done 2>&1 | tee $OUT/runs-ab.log
for k in 1 2; do for tree in .base .; do probe $tree random:$TOK; done; done 2>&1 | tee -a $OUT/runs-ab.log
for tree in .base .; do probe $tree random:phi-2; done 2>&1 | tee -a $OUT/runs-ab.log
SMOKE_W=/tmp/smokew3 SMOKE_ONLY='^(resume = uninterrupted \(fused|fused rope = transformers rope)' timeout 200 bash scripts/gpu_smoke.sh 2>&1 | tail -5
mv $OUT/smoke.log $OUT/smoke-call3.log; grep "largest relative\|bit for bit\|differ" $OUT/smoke-call3.log
