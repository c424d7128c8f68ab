#!/usr/bin/env bash
# nineteenth round, call 1 (no GGUF): where the captured SmolLM2 step's kernels go now (top kernels by GPU time, and in
# eager mode the operators that launch the most), where the model load's time goes piece by piece at a630914 (.base0) and
# at ef6d25b (this tree), and the train command's imports (-X importtime)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/; D=$PWD/.devdata/snli
P="--batch 8 --seq 64 --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-rope --fused-norm"
timeout 120 python3 scripts/profile_step.py --model random:$TOK --tokenizer $TOK $P --top 80 > $OUT/profile-fast.json 2> $OUT/profile-fast.err
python3 -c "import json; d=json.load(open('$OUT/profile-fast.json')); print(d['median_step_ms'], d['gpu_kernels_per_step'], d['gpu_busy_ms_per_step'])"
timeout 150 python3 scripts/profile_step.py --model random:$TOK --tokenizer $TOK $P --step-mode eager --top 60 > $OUT/profile-eager.json 2> $OUT/profile-eager.err
python3 -c "import json; d=json.load(open('$OUT/profile-eager.json')); print(d['median_step_ms'], d['gpu_kernels_per_step'], d['gpu_busy_ms_per_step'])"
for k in 1 2; do for tree in .base0 .; do
  (cd $tree && timeout 60 python3 $OLDPWD/docs/bench/nineteenth/loadprobe.py --model random:$TOK --tokenizer $TOK 2>/dev/null | sed "s|^|$tree |")
done; done | tee $OUT/loadprobe.log
# (this last run stopped at its flags, `--seq` being profile_step's and not the train command's: its import log was partial
# and is not kept)
timeout 90 python3 -X importtime -m nli_qlora.train --model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl \
  --validation-file $D/validation.jsonl --test-file $D/test.jsonl --train-size 16 --validation-size 16 --test-size 16 --epochs 1 \
  --quiet --output-dir /tmp/it-run $P 2> $OUT/importtime-train.txt > /dev/null
gzip -f $OUT/importtime-train.txt; ls -la $OUT
