#!/usr/bin/env bash
# session 2026-12-02 call 1: GGUF half a to /tmp; the whole command, HEAD (1c04af6, .base) against the
# background checkpoint writes, alternating; SmolLM2 shapes (best options) and Phi-2 shapes
cp .gguf_a/smol.partaa /tmp/
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz && tar -xJf .x/base.tar.xz
source scripts/gpu_env.sh > /dev/null
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null
D=$PWD/.devfull/snli
DATA="--tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet"
S="--model random:$TOK $DATA --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections"
F="--model random:phi-2 $DATA --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections"
R() { dir=$1; name=$2; shift 2; rm -rf /tmp/runs/$name; (cd $dir && PYTHONPATH=$OLDPWD/.site:/tmp/site:$PWD /usr/bin/time -f "$name %e s shell" python3 -m nli_qlora.train "$@" --output-dir /tmp/runs/$name); cp /tmp/runs/$name/metrics.jsonl $OUT/$name.jsonl; }
python3 -c "import torch; torch.zeros(1).cuda()"  # a first CUDA start outside the timed runs
for k in 1 2 3; do R .base smol-old-$k $S; R . smol-new-$k $S; done
R .base phi-old $F; R . phi-new $F
python3 .x/gap.py $OUT/*.jsonl
ls /tmp/runs/smol-new-1/checkpoints/ && ls -la /tmp/runs/phi-new/checkpoints/epoch-5/
