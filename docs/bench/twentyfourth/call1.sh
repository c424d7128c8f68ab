#!/usr/bin/env bash
# twenty-fourth round, call 1: the smoke's resume checks on 2cddb57 (run.checkpoint owning torch's generators;
# not run on a GPU last round); what a module file costs the import system on this host (fsprobe.py); the whole
# SmolLM2 command twice, as this round's reference.
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz
source scripts/gpu_env.sh > $OUT/env.log 2>&1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
(uname -a; cat /proc/version; dmesg 2>&1 | head -5; mount | grep -E ' / | /tmp | /usr' ; df -h / /tmp /usr/lib/python3*; nproc; python3 -c 'import sys; print(sys.path)') > $OUT/host.log 2>&1
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
ARGS="--model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --test-size 2000 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --fused-norm --fused-rope"
python3 -m nli_qlora.train $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/warm > /dev/null 2>&1
for k in 1 2; do timeout 60 python3 docs/bench/twentyfourth/fsprobe.py -- $ARGS --train-size 16 --epochs 1 --output-dir /tmp/runs/fs-$k; done | tee $OUT/fsprobe.jsonl
for k in 1 2; do /usr/bin/time -f "new-$k %e s shell" timeout 40 python3 -m nli_qlora.train $ARGS --output-dir /tmp/runs/new-$k; done > $OUT/whole.log 2>&1
python3 scripts/run_timeline.py /tmp/runs/new-{1,2} | tee -a $OUT/whole.log
SMOKE_W=/tmp/smokew SMOKE_ONLY='^resume = uninterrupted( \(bf16 lora\)| \(fused projections\))?$' timeout 300 bash scripts/gpu_smoke.sh 2>&1 | tail -4
mv $OUT/smoke.log $OUT/smoke-call1.log 2>/dev/null
