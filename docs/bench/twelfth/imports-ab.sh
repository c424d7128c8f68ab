#!/usr/bin/env bash
# session twelfth round: CUDA init on a thread (probe); scipy.optimize deferred + the distribution map built lazily (HEAD acc33ff in .base vs tree), alternating
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz && tar -xJf .x/base.tar.xz
source scripts/gpu_env.sh > /dev/null
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
python3 -m pytest tests/test_distribution_map.py tests/test_deferred_import.py tests/test_import_structure_cache.py -q -p no:cacheprovider 2>&1 | tail -1
for k in 1 2 3 4; do python3 .x/cudapar.py seq; python3 .x/cudapar.py thread; done > $OUT/cudapar.log 2>&1
I="import time, sys; t=time.time(); import nli_qlora, torch; a=time.time(); import transformers; from transformers import LlamaForCausalLM, PhiForCausalLM; import peft, bitsandbytes; b=time.time(); print(round(b-t, 2), round(b-a, 2), 'scipy.optimize' in sys.modules)"
for k in 1 2 3 4 5 6; do
  echo "imports pair $k old $(cd .base && PYTHONPATH=$OLDPWD/.site:/tmp/site:$PWD python3 -c "$I")  new $(python3 -c "$I")"
done > $OUT/imports-ab.log 2>&1
python3 -m nli_qlora.train --model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --train-size 64 --validation-size 16 --test-size 16 --epochs 1 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --output-dir /tmp/runs/s
head -n 2000 $D/test.jsonl > /tmp/test2000.jsonl
S() { /usr/bin/time -f "$1 %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/s --input /tmp/test2000.jsonl --output /tmp/pred.jsonl --metrics-out $OUT/$1.json --quiet; }
for k in 1 2 3 4; do (cd .base && PYTHONPATH=$OLDPWD/.site:/tmp/site:$PWD S score-old-$k); S score-new-$k; done > $OUT/score-ab.log 2>&1
for m in old new; do
  if [ $m = old ]; then (cd .base && PYTHONPATH=$OLDPWD/.site:/tmp/site:$PWD python3 -X importtime -c "import nli_qlora, transformers; from transformers import LlamaForCausalLM; import peft, bitsandbytes" 2> $OUT/importtime-$m.txt)
  else python3 -X importtime -c "import nli_qlora, transformers; from transformers import LlamaForCausalLM; import peft, bitsandbytes" 2> $OUT/importtime-$m.txt; fi
  grep -E "\| +(transformers.utils.import_utils|transformers.loss.loss_utils|transformers|torch|bitsandbytes|peft)$" $OUT/importtime-$m.txt | sed "s/^/$m /"
done
cat $OUT/imports-ab.log; grep shell $OUT/score-ab.log; cat $OUT/cudapar.log
