#!/usr/bin/env bash
# session twelfth round, first call: the scan cache (37b859a in .base vs HEAD) on the imports and the score command, alternating;
# where a whole train and score process spend their start-up at HEAD (importtime, cProfile)
tar -xJf .x/site.tar.xz && tar -xJf .x/devdata.tar.xz && tar -xJf .x/devfull.tar.xz && tar -xJf .x/base.tar.xz
source scripts/gpu_env.sh > /dev/null
TOK=/tmp/smollm2-tokenizer; cp -r .devdata/smollm2-tokenizer /tmp/ 2>/dev/null; D=$PWD/.devfull/snli
I="import time, sys; t=time.time(); import nli_qlora, torch, transformers; from transformers import LlamaForCausalLM, PhiForCausalLM; import peft, bitsandbytes; print(round(time.time()-t, 2))"
for k in 1 2 3 4 5; do
  echo "imports pair $k old $(cd .base && PYTHONPATH=$OLDPWD/.site:/tmp/site:$PWD python3 -c "$I")  new $(python3 -c "$I")"
done
python3 -m pytest tests/test_import_structure_cache.py -q -p no:cacheprovider 2>&1 | tail -1
/usr/bin/time -f "train %e s" python3 -X importtime -m nli_qlora.train --model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --train-size 64 --validation-size 16 --test-size 16 --epochs 1 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --output-dir /tmp/runs/s 2> $OUT/importtime-train.txt; tail -2 $OUT/importtime-train.txt | cut -c1-200
grep -o '"startup": {[^}]*}' /tmp/runs/s/metrics.jsonl
head -n 2000 $D/test.jsonl > /tmp/test2000.jsonl
S() { /usr/bin/time -f "$1 %e s shell" python3 -m nli_qlora.score --checkpoint /tmp/runs/s --input /tmp/test2000.jsonl --output /tmp/pred.jsonl --metrics-out $OUT/$1.json --quiet; }
for k in 1 2 3; do (cd .base && PYTHONPATH=$OLDPWD/.site:/tmp/site:$PWD S score-old-$k); S score-new-$k; done
wc -l < /tmp/pred.jsonl
python3 -X importtime -m nli_qlora.score --checkpoint /tmp/runs/s --input /tmp/test2000.jsonl --output /tmp/pred.jsonl --quiet 2> $OUT/importtime-score.txt
python3 -m cProfile -o $OUT/score.prof -m nli_qlora.score --checkpoint /tmp/runs/s --input /tmp/test2000.jsonl --output /tmp/pred.jsonl --quiet
python3 -m cProfile -o $OUT/train.prof -m nli_qlora.train --model random:$TOK --tokenizer $TOK --train-file $D/train_20k.jsonl --validation-file $D/validation.jsonl --test-file $D/test.jsonl --train-size 1000 --test-size 2000 --epochs 1 --quiet --dequantize-base --lora-compute-dtype bfloat16 --fused-lora --fused-projections --output-dir /tmp/runs/p
python3 -c "
import pstats; p=pstats.Stats('$OUT/score.prof'); p.sort_stats('cumulative').print_stats(45)" | cut -c1-180 | tail -50
