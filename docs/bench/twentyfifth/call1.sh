#!/usr/bin/env bash
# twenty-fifth round, call 1: the GGUF's first third copied to /tmp (calls 2 and 3 follow while the machine is warm); a
# short random-weights run of each tree, so that bytecode and Triton's cache are warm for call 3's timings
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
cp .g1/gp00 /tmp/ && ls -l /tmp/gp00
source scripts/gpu_env.sh > $OUT/env1.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > $OUT/warm1.log 2>&1; echo "new warm-up rc $?"
(cd .base && python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm-base > /dev/null 2>&1; echo "base warm-up rc $?")
