#!/usr/bin/env bash
# twenty-first round, call 2 (call 1's step probes were given flags stepprobe.py does not take; its own six options
# are the run's): the kernel against bitsandbytes' CUDA kernel with the change of the weights compared relatively;
# the previous revision (.base, 5f19dd8) and this one alternating: the step as the loop runs it (stepprobe.py's
# timed_step and back-to-back), SmolLM2's configuration with random weights at batch 8 x 64 and Phi-2's; the flat
# update both ways in the benchmark suite (full size: Phi-2's LoRA set)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/
timeout 150 python3 scripts/check_adamw8bit.py 2>&1 | tee $OUT/check-adamw8bit.log
probe() {  # probe TREE MODEL: the loop's step, one line
  (cd $1 && timeout 100 python3 $OLDPWD/docs/bench/seventeenth/stepprobe.py --model $2 --tokenizer $TOK 2>>$OUT/probe.err \
    | python3 -c "import json,sys; d=json.load(sys.stdin); a=d['as-is']; print('$1', '$2'[-10:], 'timed', d['timed_step_ms_per_step'], 'b2b', d['back-to-back_ms_per_step'], 'graph', [x['g_graph'] for x in a])")
}
for k in 1 2; do for tree in .base .; do probe $tree random:$TOK; done; done 2>&1 | tee $OUT/runs-ab.log
for tree in .base .; do probe $tree random:phi-2; done 2>&1 | tee -a $OUT/runs-ab.log
NLI_BENCH_SIZE=full timeout 120 python3 -m pytest -c kernels_bench/pytest.ini kernels_bench -q -k "flat_update or optimizer" \
  --benchmark-json $OUT/bench-update.json 2>&1 | tail -12
