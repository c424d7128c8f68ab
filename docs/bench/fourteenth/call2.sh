tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh
[ -d /tmp/snli ] || cp -r .devdata/snli /tmp/snli; [ -d /tmp/smollm2-tokenizer ] || cp -r .devdata/smollm2-tokenizer /tmp/
export TRITON_CACHE_DIR=/tmp/triton-cold TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
for h in package module package module; do python3 docs/bench/fourteenth/importprobe.py $h 2>&1 | tail -1; done > $OUT/imports.log
A=${A:-"--model random:/tmp/smollm2-tokenizer --tokenizer /tmp/smollm2-tokenizer --batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --top 25"}
for r in 1 2; do for m in none rope rope+swiglu; do
  python3 docs/bench/fourteenth/ligerstep.py $m $A > $OUT/step-$m-$r.json 2>$OUT/step-$m-$r.err
  python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().split('\n',1)[1]); print(sys.argv[2], d['median_step_ms'], d['gpu_kernels_per_step'], d['gpu_busy_ms_per_step'], d['host_gap_ms_per_step'], d['startup_s'])" $OUT/step-$m-$r.json "$m $r" || tail -5 $OUT/step-$m-$r.err
done; done
python3 -c "import json; d=json.loads(open('$OUT/step-none-1.json').read().split('\n',1)[1]); print(json.dumps(d['kernels_by_launching_op']))"
python3 -c "import json; d=json.loads(open('$OUT/step-rope-1.json').read().split('\n',1)[1]); print(json.dumps(d['kernels_by_launching_op']))"
cat $OUT/imports.log
cd $OUT && tar -czf steps.tgz step-*.json step-*.err && rm step-*
