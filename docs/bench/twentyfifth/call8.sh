#!/usr/bin/env bash
# twenty-fifth round, call 8: what an evaluation batch of a new shape costs its first time (shapeprobe.py), in the
# score command on 2,000 test rows with a short random-weights run's adapter (the six options); twice with CUDA's
# lazy module loading (torch's default), twice with every module loaded at start (CUDA_MODULE_LOADING=EAGER)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env8.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/ckpt > /dev/null 2>&1; echo "train rc $?"
head -n 2000 $D/test.jsonl > /tmp/test2000.jsonl
SC="--checkpoint /tmp/runs/ckpt --input /tmp/test2000.jsonl --output /tmp/p.jsonl --quiet"
for mode in LAZY EAGER LAZY EAGER; do
  echo "== $mode"
  CUDA_MODULE_LOADING=$mode /usr/bin/time -f "score $mode %e s shell" timeout 90 python3 docs/bench/twentyfifth/shapeprobe.py $SC 2> /tmp/probe-$mode.err
  grep -E '^SHAPE|shell' /tmp/probe-$mode.err
done 2>&1 | tee $OUT/shapeprobe.log
cp /tmp/probe-LAZY.err $OUT/shapeprobe-lazy.err; cp /tmp/probe-EAGER.err $OUT/shapeprobe-eager.err
for m in LAZY EAGER; do
  for k in 1 2; do CUDA_MODULE_LOADING=$m /usr/bin/time -f "plain score $m %e s shell" python3 -m nli_qlora.score $SC --metrics-out /tmp/m.json; python3 -c "import json; m=json.load(open('/tmp/m.json')); print(m['before_rows_s'], m['seconds'])"; done
done 2>&1 | grep -v -i warn | tee -a $OUT/shapeprobe.log
