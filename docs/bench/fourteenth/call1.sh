# fourteenth round, first call: Liger's rope / SiLU*up probes, the step with them patched in, norm-bench,
# the fused-norm test on CUDA
# (its step loop passed profile_step.py an extra argument and ran no step, fixed here; the norm-bench part wrote
# nothing without the GGUF: the step figures are call2.sh's, which ran this loop as written)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh
export TRITON_CACHE_DIR=/tmp/triton-cold TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
python3 -c "import triton, sys; print('triton', triton.__version__)"
echo "=== ligerprobe (cold Triton cache)"; python3 docs/bench/fourteenth/ligerprobe.py 2>&1 | tee $OUT/ligerprobe-cold.jsonl | cut -c1-600
echo "=== ligerprobe (warm)"; python3 docs/bench/fourteenth/ligerprobe.py > $OUT/ligerprobe-warm.jsonl 2>&1; cut -c1-300 $OUT/ligerprobe-warm.jsonl
A="--model random:/tmp/smollm2-tokenizer --tokenizer /tmp/smollm2-tokenizer --batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --top 25"
for r in 1 2; do for m in none rope rope+swiglu; do
  python3 docs/bench/fourteenth/ligerstep.py $m $A > $OUT/step-$m-$r.json 2>$OUT/step-$m-$r.err
  python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().split('\n',1)[1]); print(sys.argv[2], d['median_step_ms'], d['gpu_kernels_per_step'], d['gpu_busy_ms_per_step'], d['host_gap_ms_per_step'], d['startup_s'])" $OUT/step-$m-$r.json "$m $r" || tail -5 $OUT/step-$m-$r.err
done; done
python3 -c "import json; d=json.loads(open('$OUT/step-none-1.json').read().split('\n',1)[1]); print(json.dumps(d['kernels_by_launching_op'], indent=0))"
python3 -c "import json; d=json.loads(open('$OUT/step-rope+swiglu-1.json').read().split('\n',1)[1]); print(json.dumps(d['kernels_by_launching_op'], indent=0))"
echo "=== test_fused_norm on CUDA"; python3 -m pytest -q -x tests/test_fused_norm.py -p no:cacheprovider 2>&1 | tail -4
echo "=== norm-bench"; bash scripts/gpu_runs.sh norm-bench 2>&1 | tail -9
cd $OUT && tar -czf steps.tgz step-*.json step-*.err && rm step-*
