#!/usr/bin/env bash
# nineteenth round, call 2: the previous revision (.base, ef6d25b) and this one (the LoRA dropout inside the group's A kernels,
# model/fused_dropout.py) alternating: the captured step's parts (stepprobe.py) and its kernels (profile_step.py), SmolLM2's
# configuration with random weights at batch 8 and 64 x 64, Phi-2's at batch 8; then the smoke's resume with the six options
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/
P="--batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-rope --fused-norm"
probe() {  # probe TREE MODEL [ARGS]: the step's parts, one line
  (cd $1 && timeout 100 python3 $OLDPWD/docs/bench/seventeenth/stepprobe.py --model $2 --tokenizer $TOK "${@:3}" 2>$OUT/probe.err \
    | python3 -c "import json,sys; d=json.load(sys.stdin); a=d['as-is']; print('$1', '$2'[-10:], '${*:3}', 'wall', [x['wall'] for x in a], 'graph', [x['g_graph'] for x in a], 'opt', [x['g_opt'] for x in a], 'timed', d['timed_step_ms_per_step'])")
}
for k in 1 2; do for tree in .base .; do probe $tree random:$TOK; done; done 2>&1 | tee $OUT/runs-ab.log
for tree in .base .; do (cd $tree && timeout 100 python3 scripts/profile_step.py --model random:$TOK --tokenizer $TOK $P --top 80 2>/dev/null > $OUT/profile-$([ $tree = . ] && echo new || echo base).json;
  python3 -c "import json; d=json.load(open('$OUT/profile-$([ $tree = . ] && echo new || echo base).json')); print('$tree', 'profile', d['median_step_ms'], 'ms', d['gpu_kernels_per_step'], 'kernels', d['gpu_busy_ms_per_step'], 'ms busy')"); done 2>&1 | tee -a $OUT/runs-ab.log
for tree in .base .; do probe $tree random:phi-2; done 2>&1 | tee -a $OUT/runs-ab.log
for tree in .base .; do probe $tree random:$TOK --batch 64 --steps 30; done 2>&1 | tee -a $OUT/runs-ab.log
SMOKE_W=/tmp/smokew SMOKE_ONLY='^(resume = uninterrupted \(fused)' timeout 200 bash scripts/gpu_smoke.sh 2>&1 | tail -3
grep "bit for bit\|differ" $OUT/smoke.log; mv $OUT/smoke.log $OUT/smoke-call2.log
